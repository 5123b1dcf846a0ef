"""What stacks sharing a cloud project (or an AWS account) have in common, and what one stack's
destroy deletes of another's: planned inventories compared, no cloud needed.

Deleting a project-level ``IAMMember`` removes the binding whoever declared it
(terraform-provider-google#13648), so two stacks declaring the same project-scoped resource means
one's ``pulumi destroy`` takes the other's. Review stacks live in a project of their own
(``rerank-platform:review.gcp_project``) and share it with each other; the tests plan dev and
review stacks together and fail on any such resource one of them would delete.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from infra.plan import Plan, PlannedResource

# Objects that live in the stack's own cluster (gone with it) or on the deployer's machine.
OUTSIDE_THE_CLOUD = ("kubernetes:", "command:", "pulumi:")
PROJECT_SCOPED_TYPES = ("gcp:projects/", "gcp:compute/projectMetadata", "gcp:logging/projectSink")


def identity(r: PlannedResource) -> tuple[Any, ...] | None:
    """The cloud object ``r`` is (its type and scalar inputs: project, name, role, member, the
    resource a grant is on, ...), or None for what is not one."""
    if r.type.startswith(OUTSIDE_THE_CLOUD) or not r.custom:
        return None
    return (r.type, *sorted((k, str(v)) for k, v in r.inputs.items() if isinstance(v, str | int | bool)))


def project_scoped(r: PlannedResource) -> bool:
    return r.type.startswith(PROJECT_SCOPED_TYPES)


def deleted_on_destroy(r: PlannedResource) -> bool:
    """Whether destroying the stack deletes the cloud object (not just forgets it)."""
    if r.retain_on_delete or r.type == "gcp:projects/serviceIdentity:ServiceIdentity":
        return False  # retained; a service identity cannot be destroyed
    if r.type == "gcp:projects/service:Service" and r.inputs.get("disableOnDestroy") is False:
        return False
    return True


def shared_deletable(plans: Iterable[Plan]) -> list[str]:
    """Each project-scoped object two of ``plans`` declare that one's destroy would delete."""
    owners: dict[tuple[Any, ...], list[tuple[str, PlannedResource]]] = {}
    for plan in plans:
        for r in plan.resources:
            key = identity(r)
            if key is not None and project_scoped(r):
                owners.setdefault(key, []).append((plan.stack, r))
    return [
        f"{rs[0][1].type} {rs[0][1].name} ({rs[0][1].inputs.get('project')}): declared by "
        f"{', '.join(sorted({s for s, _ in rs}))}; {', '.join(sorted({s for s, r in rs if deleted_on_destroy(r)}))}"
        " would delete it for all"
        for key, rs in sorted(owners.items(), key=lambda kv: str(kv[0]))
        if len({s for s, _ in rs}) > 1 and any(deleted_on_destroy(r) for _, r in rs)
    ]


def destroy_removes(plan: Plan, other: Plan) -> list[str]:
    """What destroying ``plan`` deletes that ``other`` declares too (``type name`` of other's)."""
    gone = {identity(r) for r in plan.resources if identity(r) is not None and deleted_on_destroy(r)}
    return sorted(f"{r.type} {r.name}" for r in other.resources if identity(r) in gone)
