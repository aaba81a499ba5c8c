"""MONAI Deploy: the bundles as a MONAI Deploy App SDK application (``echo_monai/apps/deploy/app.py``).

:mod:`echo_monai.apps.deploy.tasks` holds what the application does (no SDK needed); ``app.py`` the SDK application
(needs the ``[deploy]`` extra)."""
