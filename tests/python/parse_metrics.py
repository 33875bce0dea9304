"""Parses an OpenMetrics text with Prometheus's own Python parser.

Reads the text on stdin; writes a JSON list of samples,
[{"name", "labels", "value"}...]. A text the parser refuses fails the
script (exit status 1), as a Prometheus server would refuse the scrape.
"""

import json
import sys

from prometheus_client.openmetrics.parser import text_string_to_metric_families

samples = []
for family in text_string_to_metric_families(sys.stdin.read()):
    for sample in family.samples:
        samples.append({"name": sample.name, "labels": sample.labels, "value": sample.value})
json.dump(samples, sys.stdout)
