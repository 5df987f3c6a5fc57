#!/usr/bin/env python3
"""Tests of resizer.py's decisions: quantities, which claims grow, the status it writes."""

import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import resizer  # noqa: E402


def claim(requested, capacity, klass="dvt-expandable", phase="Bound"):
    return {"metadata": {"namespace": "n", "name": "c"},
            "spec": {"storageClassName": klass, "volumeName": "pv-1",
                     "resources": {"requests": {"storage": requested}}},
            "status": {"phase": phase, "capacity": {"storage": capacity}}}


class ResizerTest(unittest.TestCase):
    def test_quantities(self):
        self.assertEqual(resizer.quantity_bytes("5Gi"), 5 * 2**30)
        self.assertEqual(resizer.quantity_bytes("1500M"), 1_500_000_000)
        self.assertEqual(resizer.quantity_bytes("1e3"), 1000)
        self.assertEqual(resizer.quantity_bytes("2Ei"), 2 * 2**60)
        with self.assertRaises(ValueError):
            resizer.quantity_bytes("5 gigs")

    def test_only_a_bound_claim_of_an_expandable_class_asking_for_more_grows(self):
        classes = {"dvt-expandable"}
        self.assertEqual(resizer.needs_resize(claim("2Gi", "1Gi"), classes), "2Gi")
        self.assertIsNone(resizer.needs_resize(claim("1Gi", "1Gi"), classes))
        self.assertIsNone(resizer.needs_resize(claim("1Gi", "1024Mi"), classes))
        self.assertIsNone(resizer.needs_resize(claim("2Gi", "1Gi", klass="local-path"), classes))
        self.assertIsNone(resizer.needs_resize(claim("2Gi", "1Gi", phase="Pending"), classes))

    def test_the_status_says_in_progress_then_done(self):
        progress = resizer.in_progress("2Gi", "2026-12-07T00:00:00Z")["status"]
        self.assertEqual(progress["allocatedResourceStatuses"], {"storage": "ControllerResizeInProgress"})
        self.assertEqual(progress["conditions"][0]["type"], "Resizing")
        done = resizer.finished("2Gi")["status"]
        self.assertEqual(done["capacity"], {"storage": "2Gi"})
        self.assertIsNone(done["conditions"])
        self.assertIsNone(done["allocatedResourceStatuses"])


if __name__ == "__main__":
    unittest.main()
