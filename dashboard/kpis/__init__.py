"""The KPI engine (docs/kpis.md).

* :mod:`~dashboard.kpis.catalogue`: the YAML catalogue (default plus the city pack's override);
* :mod:`~dashboard.kpis.formulas` and :mod:`~dashboard.kpis.aqi`: pure maths;
* :mod:`~dashboard.kpis.evaluate`: current values, values per scope, series, the wall;
* :mod:`~dashboard.kpis.materialise`: the materialised series kept by the rollup job;
* :mod:`~dashboard.kpis.alerts`: thresholds, anomalies, sensor health, lifecycle, MQTT.
"""
