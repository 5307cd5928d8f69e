"""The ordered list of the pipeline's stages: one name each, and the stage that lives in its folder.

Each stage sits with the code it drives (`release/<stage>/stage.py`), so a new stage (GitHub
release, k3s, pilot files, images) is a folder plus one line here. The names are kept apart from
the classes so that the command line can offer them without importing any stage.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from release.pipeline.contract import Stage

STAGE_NAMES: tuple[str, ...] = (
    "build", "publish", "image", "render", "deploy", "certify", "promote",
)  # fmt: skip


def all_stages() -> list[Stage]:
    """One instance of every stage, in pipeline order."""
    from release.build.stage import BuildStage
    from release.certify.stage import CertifyStage
    from release.deploy.stage import DeployStage
    from release.image.stage import ImageStage
    from release.promote.stage import PromoteStage
    from release.publish.stage import PublishStage
    from release.render.stage import RenderStage

    return [
        BuildStage(),
        PublishStage(),
        ImageStage(),
        RenderStage(),
        DeployStage(),
        CertifyStage(),
        PromoteStage(),
    ]
