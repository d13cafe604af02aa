"""Preference learning pieces shared by reward-model fitting and policy training.

Both ``paretorm fit`` (``service.fitting``) and the offline trainers (``service.training``: MODPO, MAPL)
read preference JSONL and minimise ``-log sigma(margin)``. Neither may import the other: the trainers talk
to the reward service over HTTP only and must not pull the model stack, and the fitter must not depend on
the trainers. So the shared code lives here, depending on neither: `data` (json only) and `losses`
(torch only). Import the submodules directly; this package imports nothing.
"""
