"""Clips on their way to the flow actors, grouped by pairs rather than by clips.

The driver never sees pixels, only each clip's frame count once its crop finishes. From those it
cuts a shard's clips, in order, into actor calls of about ``batch_pairs`` pairs: eighteen LRW
clips, seven GRID clips or one long LRS3 clip per call, so an actor's input, and the memory it
needs, follow pairs whatever the clips' lengths (the actor cuts a long clip into batches itself,
see ``stages._attach_flow``). Plain Python: the runner hands the groups to the executor.
"""

from __future__ import annotations


class FlowFeed:
    """One shard's clips on their way to the flow actors: grouped, in the shard's order, into calls
    of at most ``batch_pairs`` pairs as their crops finish (a call holds one clip at least; the
    actor cuts a longer clip into batches itself), so a call's size follows pairs, not clips."""

    def __init__(self, shard, clip_refs: list, batch_pairs: int):
        self.shard, self.clip_refs, self.batch_pairs = shard, clip_refs, max(1, int(batch_pairs))
        self.frames: list[int | None] = [None] * len(clip_refs)  # known once each crop finished
        self.parts: list = []  # flow-call refs, in order: the writer's inputs
        self.next = 0  # first clip not yet in a call
        self.finished = not clip_refs

    def groups(self):
        """(clip refs, their frame counts) of each call that can be made now."""
        group: list[int] = []
        pairs = 0
        while self.next < len(self.clip_refs) and self.frames[self.next] is not None:
            n = max(0, self.frames[self.next] - 1)
            if group and pairs + n > self.batch_pairs:
                yield [self.clip_refs[i] for i in group], [self.frames[i] for i in group]
                group, pairs = [], 0
            group.append(self.next)
            pairs += n
            self.next += 1
        if not group:
            return
        if self.next == len(self.clip_refs) or pairs >= self.batch_pairs:
            yield [self.clip_refs[i] for i in group], [self.frames[i] for i in group]
        else:
            self.next = group[0]  # not a full call yet: wait for the next clip's count
        self.finished = self.next == len(self.clip_refs)
