"""A key's state on Prism survives a bundle slow enough for Prism to split it (runners/prism_options.py).

Prism 2.77 splits a bundle that makes no progress between two 100 ms progress ticks and frees the
keys of the elements it hands back while the primary bundle still holds them; without
`keep_stateful_bundles_whole` two bundles of one key then run at once and one's state writes are
lost (measured: a bag of six values ended as [0, 1, 2] and [3, 4, 5]; a live shard lost a bundle of
payments). Each element here takes 0.4 s of work on purpose, so the bundle is slow: that is the
condition under test, not a wait for something to happen.
"""
from __future__ import annotations

import time

import apache_beam as beam
from apache_beam.coders import VarIntCoder
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from apache_beam.testing.test_stream import TestStream
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.transforms.userstate import BagStateSpec

from tests.prism_helpers import prism_streaming_options

VALUES = list(range(6))
SLOW_ELEMENT_SECONDS = 0.4  # > two progress ticks of Prism (100 ms each)


class _SeenSoFar(beam.DoFn):
    SEEN = BagStateSpec("seen", VarIntCoder())

    def process(self, element, seen=beam.DoFn.StateParam(SEEN)):
        key, value = element
        time.sleep(SLOW_ELEMENT_SECONDS)  # slow work: what makes Prism split the bundle
        seen.add(value)
        yield key, tuple(sorted(seen.read()))


def test_a_keys_state_keeps_every_write_of_a_bundle_prism_finds_slow(prism):
    with BeamTestPipeline(options=prism_streaming_options(prism.endpoint)) as pipeline:
        seen = (pipeline
                | TestStream().add_elements([("key", value) for value in VALUES]).advance_watermark_to_infinity()
                | "Keyed" >> beam.Map(lambda element: element)
                | beam.ParDo(_SeenSoFar()))
        assert_that(seen, equal_to([("key", tuple(VALUES[:count])) for count in range(1, len(VALUES) + 1)]))
