from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from app.schemas.codegen import generate
from app.schemas.compat import check_against
from app.settings import REPO_ROOT

V1_PROFILE = Path("app/schemas/user/v1/profile.proto")


def test_generated_code_and_docs_are_up_to_date() -> None:
    stale = generate(REPO_ROOT, check=True)
    assert stale == [], f"run `rerank schema docs` and commit: {stale}"


def test_docs_list_units_ranges_and_history() -> None:
    page = (REPO_ROOT / "app/schemas/docs/user_profile.md").read_text()
    assert "| 2 | `age` | int32 | years | 18..100 | yes | yes | Age in whole years. |" in page
    assert "## Version history" in page and "removed `photo_quality` (float)" in page
    assert "| `photo_quality` | ratio 0..1 |" in page  # the v2 derived feature


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout


@pytest.fixture()
def repo(tmp_path: Path) -> Path:
    """A git repo holding a copy of the schema tree, committed: the ref to compare against."""
    shutil.copytree(
        REPO_ROOT / "app/schemas",
        tmp_path / "app/schemas",
        ignore=shutil.ignore_patterns("*.py", "*.pyi", "docs", "__pycache__"),
    )
    git(tmp_path, "init", "-q")
    git(tmp_path, "add", "-A")
    git(tmp_path, "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "base")
    return tmp_path


def edit(repo: Path, path: Path, old: str, new: str) -> None:
    f = repo / path
    text = f.read_text()
    assert re.search(old, text), old
    f.write_text(re.sub(old, new, text, count=1))


def kinds(repo: Path) -> list[str]:
    violations, _ = check_against(repo, "HEAD")
    return [v.kind for v in violations]


def test_unchanged_tree_passes(repo: Path) -> None:
    assert kinds(repo) == []


def test_additive_change_passes(repo: Path) -> None:
    edit(repo, V1_PROFILE, r"(string city = 15[^;]*;)", r"\1\n  int32 height_cm = 16;")
    assert kinds(repo) == []


def test_new_version_package_passes_and_is_noted(repo: Path) -> None:
    v3 = repo / "app/schemas/user/v3"
    v3.mkdir()
    text = (repo / "app/schemas/user/v2/profile.proto").read_text().replace("rerank.user.v2", "rerank.user.v3")
    (v3 / "profile.proto").write_text(text)
    violations, notes = check_against(repo, "HEAD")
    assert violations == [] and "rerank.user.v3: new version" in notes


def test_field_removed_without_reserved(repo: Path) -> None:
    edit(repo, V1_PROFILE, r"  // Length of the free-text bio.\n  int32 bio_length = 12[^;]*;\n", "")
    violations, _ = check_against(repo, "HEAD")
    assert [v.kind for v in violations] == ["field removed without reserved"]
    assert "field 12 'bio_length'" in violations[0].detail and "reserved 12" in violations[0].detail


def test_field_removed_with_reserved_passes(repo: Path) -> None:
    edit(repo, V1_PROFILE, r"  int32 bio_length = 12[^;]*;\n", '  reserved 12;\n  reserved "bio_length";\n')
    assert kinds(repo) == []


def test_field_retyped(repo: Path) -> None:
    edit(repo, V1_PROFILE, r"float photo_quality = 11", "double photo_quality = 11")
    violations, _ = check_against(repo, "HEAD")
    assert [v.kind for v in violations] == ["field retyped"]
    assert "float -> double" in violations[0].detail


def test_field_number_reused(repo: Path) -> None:
    edit(repo, V1_PROFILE, r"float photo_quality = 11", "string photo_url = 11")
    assert kinds(repo) == ["field number reused"]


def test_field_renamed(repo: Path) -> None:
    edit(repo, V1_PROFILE, r"int32 bio_length = 12", "int32 bio_chars = 12")
    assert kinds(repo) == ["field renamed"]


def test_reserved_number_reused(repo: Path) -> None:
    """protoc refuses a reserved number in the same file; dropping the reservation must not slip through."""
    v2 = Path("app/schemas/user/v2/profile.proto")
    edit(repo, v2, r"reserved 4, 7, 8, 9, 11;", "reserved 4, 7, 8, 9;")
    edit(repo, v2, r"(string city = 15[^;]*;)", r"\1\n  int32 height_cm = 11;")
    assert kinds(repo) == ["reserved number reused"]


def test_new_required_field(repo: Path) -> None:
    edit(
        repo, V1_PROFILE, r"(string city = 15[^;]*;)", r"\1\n  int32 height_cm = 16 [(rerank.options.required) = true];"
    )
    assert kinds(repo) == ["field became required"]


def test_message_removed_from_a_live_version(repo: Path) -> None:
    (repo / "app/schemas/user/v1/activity.proto").unlink()
    assert kinds(repo) == ["message removed"]


def test_cli_check_lists_violations_and_fails(repo: Path) -> None:
    edit(repo, V1_PROFILE, r"float photo_quality = 11", "double photo_quality = 11")
    edit(repo, V1_PROFILE, r"int32 bio_length = 12", "int32 bio_chars = 12")
    out = subprocess.run(
        [sys.executable, "-m", "app.cli", "schema", "check", "--against", "HEAD", "--repo", str(repo)],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
    )
    assert out.returncode == 1
    assert "field retyped: rerank.user.v1.UserProfile: field 11 'photo_quality': float -> double" in out.stdout
    assert "field renamed" in out.stdout
    assert "2 breaking change(s)" in out.stderr


def test_cli_check_unknown_ref_is_a_usage_error(repo: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "app.cli", "schema", "check", "--against", "nope", "--repo", str(repo)],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
    )
    assert out.returncode == 2 and "cannot read git ref 'nope'" in out.stderr
