"""The KPI engine (docs/kpis.md).

* :mod:`~kpis.catalogue`: the YAML catalogue (default plus the city pack's override);
* :mod:`~kpis.formulas` and :mod:`~kpis.aqi`: pure maths;
* :mod:`~kpis.evaluate`: current values, values per scope, series, the wall;
* :mod:`~kpis.materialise`: the materialised series kept by the rollup job;
* :mod:`~kpis.alerts`: thresholds, anomalies, sensor health, lifecycle, MQTT.
"""
