"""Cross-identity pairs on real datasets (no synthetic cross clips): each source is driven by another person."""

from __future__ import annotations

from export3d_cli.data.dataset_layout import ClipRecord
from export3d_cli.training.evaluation import _real_cross_pairs


def _clip(clip_id: str, identity: str) -> ClipRecord:
    return ClipRecord(id=clip_id, identity=identity, split="test", frames=10, valid_frames=10, extra={})


def test_each_clip_is_driven_by_the_next_clip_of_another_identity():
    clips = [_clip("a1", "a"), _clip("a2", "a"), _clip("b1", "b"), _clip("c1", "c")]
    pairs = [(appearance.id, driver.id) for appearance, driver in _real_cross_pairs(clips)]
    assert pairs == [("a1", "b1"), ("a2", "b1"), ("b1", "c1"), ("c1", "a1")]
    assert all(appearance.identity != driver.identity for appearance, driver in _real_cross_pairs(clips))


def test_a_single_identity_gives_no_cross_pairs():
    assert _real_cross_pairs([_clip("a1", "a"), _clip("a2", "a")]) == []
