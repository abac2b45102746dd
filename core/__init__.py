"""The base every citydash package may import: settings, logging, time buckets, database
pools and error classification. It imports no other citydash package."""
