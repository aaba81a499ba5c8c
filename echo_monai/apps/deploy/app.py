"""The MONAI Deploy application: a label map or an ejection fraction in, synthetic ultrasound DICOM out.

Run it as MONAI Deploy apps run (``-i`` input folder, ``-o`` output folder, ``-m`` the trained bundle folder, the
``--bundle_root`` of ``echo-monai train``)::

    python echo_monai/apps/deploy/app.py -i input -o output -m work/seg

Two SDK operators (:class:`SyntheticRequestOperator` reads and checks the request, :class:`SyntheticUltrasoundOperator`
generates and writes the DICOM files) are joined in :class:`SyntheticUltrasoundApp`; what they do is in
:mod:`echo_monai.apps.deploy.tasks`, so it is tested without the SDK. Bad input (an input folder without a label map
or ``request.json``, an EF outside 0-100, a label map of another size or with unknown classes, a model folder without
``models/model.pt``) gets one line on stderr and exit status 2, and no DICOM file is written: the request and the
model folder are checked before the SDK starts, and what only the bundle can check (a label map's size and class
values) is reported after the SDK's run.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from holoscan.conditions import CountCondition
from monai.deploy.core import Application, Fragment, Operator, OperatorSpec, init_app_context

from echo_monai.apps.deploy.tasks import DeployError, DeployRequest, generate_dicom, read_request, trained_bundle

__all__ = ["SyntheticRequestOperator", "SyntheticUltrasoundApp", "SyntheticUltrasoundOperator", "main"]

logger = logging.getLogger(__name__)


class SyntheticRequestOperator(Operator):
    """Reads the input folder into a request for the trained bundle's task.

    Named output:
        request: :class:`echo_monai.apps.deploy.tasks.DeployRequest`.
    """

    def __init__(self, fragment: Fragment, *args, input_folder: Path, bundle: str, **kwargs) -> None:
        self.input_folder, self.bundle = Path(input_folder), bundle
        super().__init__(fragment, *args, **kwargs)

    def setup(self, spec: OperatorSpec) -> None:
        spec.output("request")

    def compute(self, op_input, op_output, context) -> None:
        op_output.emit(read_request(self.input_folder, self.bundle), "request")


class SyntheticUltrasoundOperator(Operator):
    """Generates the request's synthetic ultrasound with the trained bundle and writes it as DICOM.

    Named input:
        request: :class:`echo_monai.apps.deploy.tasks.DeployRequest`.

    File output:
        ``<output_folder>/<item>.dcm``: Ultrasound Image Storage (images) or Ultrasound Multi-frame Image Storage
        (cines), modality US, ``SYNTHETIC`` in the series description.

    A request the bundle refuses (a label map of another size, unknown class values) is kept in `errors` (the
    application's, reported by :func:`main`) instead of raised inside the SDK's scheduler; nothing is written then.
    """

    def __init__(
        self, fragment: Fragment, *args, model_folder: Path, output_folder: Path, bundle: str, errors: list, **kwargs
    ) -> None:
        self.model_folder, self.output_folder, self.bundle = Path(model_folder), Path(output_folder), bundle
        self.errors = errors
        super().__init__(fragment, *args, **kwargs)

    def setup(self, spec: OperatorSpec) -> None:
        spec.input("request")

    def compute(self, op_input, op_output, context) -> None:
        request: DeployRequest = op_input.receive("request")
        try:
            written = generate_dicom(self.model_folder, request, self.output_folder, self.bundle)
        except DeployError as error:
            self.errors.append(error)
            return
        logger.info("echo_monai deploy: wrote %d synthetic DICOM file(s) to %s", len(written), self.output_folder)


class SyntheticUltrasoundApp(Application):
    """Label map (echo_seg_ddpm) or EF (echo_flow) -> synthetic ultrasound DICOM, by the trained bundle in ``-m``.

    Paths: ``-i``/``-o``/``-m``, or the SDK's ``HOLOSCAN_INPUT_PATH``/``HOLOSCAN_OUTPUT_PATH``/``HOLOSCAN_MODEL_PATH``
    (how a packaged application is run). After :meth:`run`, :attr:`errors` holds what the bundle refused.
    """

    def __init__(self, *args, **kwargs) -> None:
        self.errors: list[DeployError] = []
        super().__init__(*args, **kwargs)

    def compose(self) -> None:
        context = Application.init_app_context(self.argv)
        model_folder, bundle = Path(context.model_path), trained_bundle(context.model_path)
        reader = SyntheticRequestOperator(
            self, CountCondition(self, 1), input_folder=Path(context.input_path), bundle=bundle, name="request"
        )
        writer = SyntheticUltrasoundOperator(
            self,
            model_folder=model_folder,
            output_folder=Path(context.output_path),
            bundle=bundle,
            errors=self.errors,
            name="generate",
        )
        self.add_flow(reader, writer, {("request", "request")})


def main() -> int:
    """Check the model folder and the request (one line and status 2 when bad), then run the application."""
    context = init_app_context(sys.argv)  # -i/-o/-m over the HOLOSCAN_*_PATH variables; argparse refuses a missing -i
    try:
        read_request(context.input_path, trained_bundle(context.model_path))  # fail fast, before the SDK starts
        app = SyntheticUltrasoundApp()  # the SDK reads sys.argv
        app.run()
        if app.errors:
            raise app.errors[0]
    except DeployError as error:
        print(f"echo_monai deploy: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
