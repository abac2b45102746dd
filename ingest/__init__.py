"""citydash ingest: everything between the MQTT wire and the database.

Settings, schema migrations, the local development stack, payload decoders,
the batching writer, the MQTT service and the simulator live here.
"""
