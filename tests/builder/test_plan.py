from flowprep.builder.plan import plan_shards
from flowprep.sources import ClipRecord


def _records(n_train, n_val):
    recs = [ClipRecord(f"W/train/W_{i:05d}", f"/v/t{i}.mp4", "train", 0, "W", "lrw", None) for i in range(n_train)]
    recs += [ClipRecord(f"W/val/W_{i:05d}", f"/v/v{i}.mp4", "val", 0, "W", "lrw", None) for i in range(n_val)]
    return recs[::-1]  # the plan must not depend on input order


def test_shards_split_by_split_and_size():
    plan = plan_shards(_records(5, 2), shard_size=2)
    assert [p.name for p in plan] == ["train-00000.h5", "train-00001.h5", "train-00002.h5", "val-00000.h5"]
    assert [len(p.records) for p in plan] == [2, 2, 1, 2]
    assert all(r.split == p.split for p in plan for r in p.records)
    ids = [r.clip_id for p in plan for r in p.records]
    assert len(ids) == len(set(ids)) == 7


def test_plan_is_deterministic_and_hash_tracks_contents():
    a = plan_shards(_records(5, 2), shard_size=2)
    b = plan_shards(list(reversed(_records(5, 2))), shard_size=2)
    assert [p.plan_hash for p in a] == [p.plan_hash for p in b]
    limited = plan_shards(_records(3, 2), shard_size=2)
    # the last train shard holds other clips now, so it must not be taken for the old one
    assert limited[1].plan_hash != a[1].plan_hash
    assert limited[0].plan_hash == a[0].plan_hash
