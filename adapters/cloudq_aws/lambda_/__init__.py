"""cloudq on AWS Lambda: the SQS event source handler (handler.py), its record decoding
(records.py) and the entry point deployed functions name (entry.py)."""
