// The Keyguard console's only script: a copy button for a new key, and a confirmation before
// a form marked data-confirm is sent. The pages work without it.
"use strict";
document.addEventListener("click", function (event) {
  var button = event.target.closest("button[data-copy]");
  if (!button) return;
  var field = document.getElementById(button.getAttribute("data-copy"));
  var done = document.getElementById("copied");
  field.select();
  var report = function (text) { if (done) done.textContent = text; };
  if (navigator.clipboard && window.isSecureContext) {
    navigator.clipboard.writeText(field.value).then(
      function () { report("copied"); },
      function () { report("select the key and copy it"); });
  } else {
    report(document.execCommand("copy") ? "copied" : "select the key and copy it");
  }
});
document.addEventListener("submit", function (event) {
  var button = event.submitter;
  var question = button && button.getAttribute("data-confirm");
  if (question && !window.confirm(question)) event.preventDefault();
});
