"""No stage declares an output a queued or --temp experiment's fresh copy could lack. Such a copy holds git's files
and what DVC restores from its cache: an out with `cache: false` outside git, or with `persist: true` (which also
keeps the stage out of DVC's run cache), is missing there, and DVC reruns its stage although nothing changed (issue
24: the generate journal made every queued radius experiment caption every text again). Resumable state lives in
the per-user cache instead (pipeline.paths.resume_dir)."""

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
# the only exceptions, and why each is restored in a fresh copy
ALLOWED = {
    "data/downloads": "persist: true but cached: DVC restores it; a rerun must never delete 20 GB of archives",
}


def declared_outs() -> list[tuple[str, str, dict]]:
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    found = []
    for name, stage in stages.items():
        for kind in ("outs", "metrics", "plots"):
            for entry in stage.get(kind) or []:
                path, options = next(iter(entry.items())) if isinstance(entry, dict) else (entry, {})
                found.append((name, path, options or {}))
    return found


def test_every_uncached_out_is_a_report_in_git_and_nothing_else_persists():
    unrestorable = []
    for stage, path, options in declared_outs():
        if path in ALLOWED:
            assert options.get("cache", True), f"{stage}: {path} must stay cached ({ALLOWED[path]})"
            continue
        if options.get("persist"):
            unrestorable.append(f"{stage}: {path} (persist: true)")
        if options.get("cache") is False and not path.startswith("reports/"):
            unrestorable.append(f"{stage}: {path} (cache: false, not in reports/ which git keeps)")
    assert unrestorable == []


def test_reports_are_not_git_ignored():
    ignored = (ROOT / ".gitignore").read_text().split()
    assert not any(line.strip("/").startswith("reports") for line in ignored)
