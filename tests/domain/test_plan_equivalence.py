"""A plan's hash and plan.json are what the plan format defines, however fast they are computed.

The reference below is the format's definition written the plain way (``dataclasses.asdict``,
``json.dumps``, one ``str.replace`` per key id): the hash and the rendering the planner
produces must equal it byte for byte, so a faster implementation can't change what a change
board approved.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from typing import Any

import pytest

from bench.plan import synthetic_org
from domain.keys import mask_key_id
from domain.plan import PROVENANCE_KEYS, Plan
from domain.plan_render import render_json
from domain.planning import build_plan
from domain.synthesis import synthesize


def _plan(accounts: int, users: int, display: str | None = None) -> Plan:
    inventories, mappings, _identities = synthetic_org(accounts, users)
    if display is not None:
        # Identity-store names may be any Unicode: plan.json escapes it as json.dumps does.
        for mapping in mappings[::3]:
            mapping.identity_user_name = f"{display}-{mapping.identity_user_name}"
    return build_plan(
        migration="equivalence",
        inventory_snapshot_id=3,
        mapping_run_id=4,
        inventories=inventories,
        user_mappings=mappings,
        group_mappings=[],
        synthesis=synthesize(inventories, mappings, [], []),
        settings={"inactive_days": 90, "bake_days": 14, "protected_users": ["breakglass-*"]},
    )


def _reference_content(plan: Plan) -> dict[str, Any]:
    return {
        "format": plan.format,
        "migration": plan.migration,
        "inventory_snapshot_id": plan.inventory_snapshot_id,
        "mapping_run_id": plan.mapping_run_id,
        "settings": plan.settings,
        "users": [asdict(u) for u in plan.users],
        "actions": [asdict(a) for a in plan.actions],
        "permission_sets": plan.permission_sets,
        "assignments": plan.assignments,
        "required_customer_policies": plan.required_customer_policies,
        "findings": [asdict(f) for f in plan.findings],
    }


def _reference_hash(plan: Plan) -> str:
    content = {k: v for k, v in _reference_content(plan).items() if k not in PROVENANCE_KEYS}
    text = json.dumps(content, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _reference_json(plan: Plan, meta: dict[str, Any]) -> str:
    text = json.dumps({**meta, **_reference_content(plan)}, indent=2, sort_keys=True, default=str)
    key_ids = {a.params["access_key_id"] for a in plan.actions if "access_key_id" in a.params}
    key_ids |= {i for a in plan.actions if a.kind == "delete-access-key" for i in a.params["items"]}
    for key_id in sorted(key_ids, key=len, reverse=True):
        text = text.replace(key_id, mask_key_id(key_id))
    return text


@pytest.mark.parametrize("display", [None, "Zoë Ångström 山田"])
def test_hash_and_plan_json_equal_the_formats_definition(display: str | None):
    plan = _plan(6, 5, display)
    assert len(plan.actions) > 100
    meta = {"plan_id": 9, "hash": plan.content_hash(), "created": "2026-11-28T00:00:00+00:00"}
    assert plan.content_hash() == _reference_hash(plan)
    rendered = render_json(plan, meta)
    assert rendered == _reference_json(plan, meta)
    assert not any(key_id in rendered for key_id in plan.access_key_ids())


def test_the_same_inputs_render_the_same_bytes_twice():
    first, second = _plan(4, 6), _plan(4, 6)
    meta = {"plan_id": 1, "hash": first.content_hash()}
    assert first.content_hash() == second.content_hash()
    assert render_json(first, meta) == render_json(second, meta)


def test_masking_by_prefix_masks_exactly_the_whole_words_the_generic_pattern_does():
    import random
    import re

    from domain.plan_render import mask_key_ids

    rng = random.Random(11)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
    keys = {p + "".join(rng.choices(alphabet, k=16)) for p in ("AKIA", "ASIA") for _ in range(50)}
    pieces = []
    for key in sorted(keys):
        pieces += [key, f"x{key}", f"{key}_", f"_{key}", f"é{key}", f"{key}é", f'"{key}"']
    pieces += ["AKIA" + "Z" * 130, "ab" * 32, "AKIA…WXYZ"]
    rng.shuffle(pieces)
    text = " ".join(f"{p}{rng.choice([' ', ':', ',', '|', chr(10)])}" for p in pieces)
    masked = {k: mask_key_id(k) for k in keys}
    generic = re.sub(r"\b\w{16,128}\b", lambda m: masked.get(m.group(), m.group()), text)
    assert mask_key_ids(text, keys) == generic
    assert not any(re.search(rf"(?<!\w){k}(?!\w)", mask_key_ids(text, keys)) for k in keys)
    # Too many distinct prefixes: the generic pattern itself.
    many = {f"K{n:03d}" + "A" * 16 for n in range(100)}
    assert mask_key_ids(" ".join(sorted(many)), many) == " ".join(
        mask_key_id(k) for k in sorted(many)
    )
