"""Azure's content-filter annotations, always "safe" (the emulator filters nothing)."""

from __future__ import annotations

from typing import Any

__all__ = [
    "prompt_filter_results",
    "completion_filter_results",
    "stream_filter_results",
    "image_filter_results",
]


def _safe() -> dict[str, Any]:
    return {"filtered": False, "severity": "safe"}


def _not_detected() -> dict[str, bool]:
    return {"filtered": False, "detected": False}


def stream_filter_results() -> dict[str, Any]:
    """The block on each streamed content chunk."""
    return {"hate": _safe(), "self_harm": _safe(), "sexual": _safe(), "violence": _safe()}


def completion_filter_results() -> dict[str, Any]:
    """``choices[i].content_filter_results`` of a non-streamed answer."""
    return {
        "hate": _safe(),
        "protected_material_code": _not_detected(),
        "protected_material_text": _not_detected(),
        "self_harm": _safe(),
        "sexual": _safe(),
        "violence": _safe(),
    }


def prompt_filter_results(prompts: int) -> list[dict[str, Any]]:
    """``prompt_filter_results`` for ``prompts`` prompts."""
    return [
        {
            "prompt_index": index,
            "content_filter_results": {
                "hate": _safe(),
                "jailbreak": _not_detected(),
                "self_harm": _safe(),
                "sexual": _safe(),
                "violence": _safe(),
            },
        }
        for index in range(prompts)
    ]


def image_filter_results() -> dict[str, Any]:
    """The blocks Azure adds to each generated image (DALL-E 3)."""
    return {
        "content_filter_results": stream_filter_results(),
        "prompt_filter_results": {**stream_filter_results(), "jailbreak": _not_detected()},
    }
