"""Who a study holds: every identity a split manifest names, to keep public pretraining data clear of them."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterable

#: Manifest fields that name identities: lists of names, or dicts keyed by name.
PEOPLE_FIELDS = ("identities", "members", "nonmembers", "overrepresented", "train", "heldout", "auxiliary",
                 "member_references", "nonmember_references", "nonmember_others")


class OverlapError(ValueError):
    """Public data shares people with the study it is meant to stay clear of; the message names them."""


def people_in_manifest(path: str | os.PathLike) -> set[str]:
    """Every identity named in a privgan split manifest (any kind: members, held-out, auxiliary, references)."""
    p = Path(path)
    try:
        raw = json.loads(p.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"cannot read the split manifest {str(p)!r} whose people to exclude: {e}") from e
    if not isinstance(raw, dict) or not any(k in raw for k in PEOPLE_FIELDS):
        raise ValueError(f"{str(p)!r} is not a privgan split manifest (none of {', '.join(PEOPLE_FIELDS)} in it)")
    return people_named(raw)


def people_named(raw: dict) -> set[str]:
    """Every identity named in a manifest's fields (``asdict`` of one, or its JSON)."""
    names: set[str] = set()
    for k in PEOPLE_FIELDS:
        v = raw.get(k)
        if isinstance(v, dict):
            names.update(v)
        elif isinstance(v, list):
            names.update(x for x in v if isinstance(x, str))
    return names


def people_of(manifests: Iterable[str | os.PathLike] | None) -> set[str]:
    """The union of ``people_in_manifest`` over ``manifests`` (none: empty)."""
    out: set[str] = set()
    for m in manifests or ():
        out |= people_in_manifest(m)
    return out


def refuse_overlap(public: set[str], study: set[str], *, public_source: str, study_source: str) -> None:
    """Raise ``OverlapError`` naming the people in both sets."""
    both = sorted(public & study)
    if both:
        shown = ", ".join(both[:10]) + (f" and {len(both) - 10} more" if len(both) > 10 else "")
        raise OverlapError(
            f"{len(both)} people are in both the public data ({public_source}) and the study ({study_source}): {shown}. "
            "Public pretraining must not see the study's members, held-out or reference people, or the attacks' "
            "auxiliary people: retrain the public model with exclude_people_of pointing at the study's manifest.json")
