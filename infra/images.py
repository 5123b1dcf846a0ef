"""The stack's images: the Artifact Registry repository, the build account, and the build itself
(Cloud Build, run by ``pulumi up`` through ``scripts/build-images.sh``) before anything that runs
them is declared.

Images are tagged by the digest of what goes into them (``<image_tag>-<source digest>``), so a
code change is a new tag and every consumer's input changes with it; prod pins each image by its
registry digest too. Every resource that names an image depends on ``Images.built`` (a policy
rule checks it), so a first ``pulumi up`` on a fresh project builds before it deploys.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pulumi
import pulumi_command as command
import pulumi_gcp as gcp

from app.settings import REPO_ROOT
from infra.common import StackContext, grant, member, private_bucket, settle

# Each image and the Dockerfile it is built from (cloudbuild.yaml builds one per submission).
IMAGES = {"app": "Dockerfile", "ingest": "app/featurestore/flex_template/Dockerfile"}
BUILD_CONFIG = "cloudbuild.yaml"
SKIP_PARTS = {"__pycache__", "build", "node_modules"}
# Versions older than this go unless they are among the 20 newest of their image (the KEEP policy).
IMAGE_RETENTION_DAYS = 30
# Written by `pulumi stack select --create` on a runner; never part of an image's identity.
REVIEW_STACK_FILE = re.compile(r"^stacks/Pulumi\.pr-[0-9]+\.yaml$")


def image_inputs(image: str, root: Path = REPO_ROOT) -> tuple[str, ...]:
    """What goes into ``image``: its Dockerfile, the build config and what the Dockerfile COPYs
    from the checkout (not ``--from`` another stage), so its tag follows exactly those."""
    dockerfile = IMAGES[image]
    sources = [dockerfile, BUILD_CONFIG]
    for line in (root / dockerfile).read_text().splitlines():
        parts = line.split()
        if parts[:1] == ["COPY"] and not any(p.startswith("--from") for p in parts):
            sources += [p for p in parts[1:] if not p.startswith("--")][:-1]
    return tuple(dict.fromkeys(s.rstrip("/") for s in sources))


def build_files(inputs: tuple[str, ...], root: Path = REPO_ROOT) -> list[str]:
    """The files under ``inputs``: the tracked ones (so an editor's backup or a runner's stack file
    cannot change a tag), or, outside a git checkout, every file."""
    try:
        listed = subprocess.run(
            ["git", "-C", str(root), "ls-files", "-z", "--", *inputs],
            capture_output=True,
            check=True,
            timeout=30,
        ).stdout.decode()
        files = [f for f in listed.split("\0") if f]
    except (OSError, subprocess.SubprocessError):
        files = [
            str(p.relative_to(root))
            for top in inputs
            for p in ([root / top] if (root / top).is_file() else (root / top).rglob("*"))
            if p.is_file()
        ]
    return sorted(
        f
        for f in files
        if not SKIP_PARTS.intersection(Path(f).parts) and not f.endswith(".pyc") and not REVIEW_STACK_FILE.match(f)
    )


def source_digest(image: str, root: Path = REPO_ROOT) -> str:
    """One digest over every file ``image`` is built from (paths and working-tree contents)."""
    h = hashlib.sha256()
    for rel in build_files(image_inputs(image, root), root):
        path = root / rel
        if path.is_file():  # a tracked file deleted in the working tree is not in the image
            h.update(rel.encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


@dataclass
class ImagesArgs:
    context: StackContext
    build_account: gcp.serviceaccount.Account


class Images(pulumi.ComponentResource):
    def __init__(self, name: str, args: ImagesArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("rerank:images:Images", name, None, opts)
        ctx, n, s = args.context, args.context.names, args.context.settings
        self.repository = gcp.artifactregistry.Repository(
            f"{name}-repository",
            repository_id=n.image_repository,
            project=ctx.project,
            location=ctx.region,
            format="DOCKER",
            description="ingest, worker and training images, tagged by source digest",
            cleanup_policies=[
                gcp.artifactregistry.RepositoryCleanupPolicyArgs(
                    id="keep-recent",
                    action="KEEP",
                    most_recent_versions=gcp.artifactregistry.RepositoryCleanupPolicyMostRecentVersionsArgs(
                        keep_count=20
                    ),
                ),
                # Every build is tagged, and a KEEP policy only exempts what it matches: without
                # deleting tagged versions too, the repository grows by a build per change for ever.
                gcp.artifactregistry.RepositoryCleanupPolicyArgs(
                    id="drop-old",
                    action="DELETE",
                    condition=gcp.artifactregistry.RepositoryCleanupPolicyConditionArgs(
                        tag_state="ANY", older_than=f"{IMAGE_RETENTION_DAYS * 86400}s"
                    ),
                ),
            ],
            labels=ctx.labels,
            opts=ctx.protect(self),
        )
        # Build sources are staged here, not in the default <project>_cloudbuild bucket, so the
        # build account reads only this stack's sources.
        self.staging = private_bucket(ctx, f"{name}-staging", n.build_bucket(ctx.project), self, "source/")
        builder, p = member(args.build_account), ctx.project
        self.build_grants = grants = [
            grant(
                ctx,
                gcp.artifactregistry.RepositoryIamMember,
                f"{name}-build-push",
                self,
                builder,
                "roles/artifactregistry.writer",
                project=p,
                location=ctx.region,
                repository=self.repository.name,
            ),
            grant(
                ctx,
                gcp.storage.BucketIAMMember,
                f"{name}-build-source",
                self,
                builder,
                "roles/storage.objectViewer",
                bucket=self.staging.name,
            ),
            grant(
                ctx, gcp.projects.IAMMember, f"{name}-build-logs", self, builder, "roles/logging.logWriter", project=p
            ),
        ]
        # Per image: a change to what goes into one image rebuilds (and rolls out) that one only.
        self.tags = {image: f"{s.image_tag}-{source_digest(image)[:12]}" for image in IMAGES}
        self.prefix = n.image_prefix(ctx.region, ctx.project)
        # The build runs where `pulumi up` runs (gcloud, authenticated as the deployer, who may act
        # as the build account); it skips images that already exist and prints their digests. It
        # finds the checkout itself: an absolute `dir` would differ per machine and show as a
        # change in every preview from another checkout.
        self.built = command.local.Command(
            f"{name}-build",
            create=pulumi.Output.all(args.build_account.id, self.staging.name).apply(
                lambda a: " ".join(
                    [
                        'cd "$(git rev-parse --show-toplevel)" &&',
                        "scripts/build-images.sh",
                        f"--project {p}",
                        f"--prefix {self.prefix}",
                        *(f"--image {image}={IMAGES[image]}={tag}" for image, tag in self.tags.items()),
                        f"--service-account {a[0]}",
                        f"--staging gs://{a[1]}/source",
                    ]
                )
            ),
            triggers=sorted(self.tags.values()),
            opts=pulumi.ResourceOptions(
                parent=self,
                depends_on=[self.repository, settle(f"{name}-build-settled", grants, ctx.opts(self))],
            ),
        )
        self.pinned = s.protected
        self.names, self.region, self.project, self.context = n, ctx.region, ctx.project, ctx
        self.register_outputs({"repository": self.repository.name, "tags": self.tags})

    def pull(self, name: str, parent: pulumi.Resource, who: pulumi.Input[str]) -> pulumi.CustomResource:
        """Let ``who`` pull the stack's images (a grant on the repository, under ``parent``)."""
        return grant(
            self.context,
            gcp.artifactregistry.RepositoryIamMember,
            name,
            parent,
            who,
            "roles/artifactregistry.reader",
            project=self.project,
            location=self.region,
            repository=self.repository.name,
        )

    def tagged(self, image: str) -> str:
        """``image`` (app or ingest) by its source-digest tag (what the compiled pipeline names)."""
        return self.names.image(self.region, self.project, image, self.tags[image])

    def ref(self, image: str) -> pulumi.Output[str]:
        """Where ``image`` is pulled from: by tag, and in prod by registry digest too."""
        tagged = self.tagged(image)
        if not self.pinned:
            # Still an Output of the build, so whatever runs it waits for the build.
            return self.built.stdout.apply(lambda _: tagged)
        return self.built.stdout.apply(lambda out: f"{tagged}@{json.loads(out)[image]}")
