"""echo_monai's bundles served in MONAI Label (:mod:`echo_monai.apps.label.app`, which needs MONAI Label; its own
environment is made by ``.ci/label-env``). :mod:`echo_monai.apps.label.tasks` holds what a request does, without
MONAI Label; ``python -m echo_monai.apps.label`` makes the app folder.
"""
