"""Tests of the stream bridge (telcoflow_trio.streams)."""
