"""Key rotation: upstream Azure keys (the key1/key2 flip) and their triggers.

* :mod:`.settings`  the configuration models (credential kinds, management, rotation);
* :mod:`.machine`   the rotation state machine and the schedule, pure functions over values;
* :mod:`.store`     rotations, leases, replica acknowledgements and key-rotation records (SQL);
* :mod:`.azure`     the Azure Resource Manager calls (``azure-mgmt-cognitiveservices``);
* :mod:`.sinks`     where an upstream key lives (local vault, Azure Key Vault);
* :mod:`.runner`    carries a rotation out, step by step, resumable after a crash;
* :mod:`.replicas`  every gateway replica reports which key version it serves;
* :mod:`.scheduler` schedule, security-event and expiry triggers inside the gateway;
* :mod:`.service`   the facade the CLI and the gateway call.

Importing this package is cheap: the Azure SDKs are imported only when a rotation runs.
"""
