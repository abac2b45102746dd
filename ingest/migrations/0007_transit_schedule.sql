-- The city pack's GTFS timetable, as far as the KPI engine needs it: which trips run
-- when (vehicles_in_service and the expected vehicle count of the transport KPIs,
-- dashboard/kpis/schedule.py).  Written by `python -m layers load` (layers/store.py, as
-- the owner, like districts and sensors); the whole timetable is replaced when the
-- pack's feed changes.  Times are seconds after midnight of the service day in the
-- city's local time ("noon minus 12 h", GTFS) and may pass 24:00:00.

-- One row: the fingerprint of the stored timetable (cheap cache key for readers).
CREATE TABLE transit_feed (
    id          boolean PRIMARY KEY DEFAULT true CHECK (id),
    pack        text NOT NULL,
    fingerprint text NOT NULL,
    trips       integer NOT NULL,
    loaded_at   timestamptz NOT NULL DEFAULT now()
);

-- calendar.txt: weekdays (Monday first) and the date range of a service.
CREATE TABLE transit_calendar (
    service_id  text PRIMARY KEY,
    days        boolean[] NOT NULL CHECK (cardinality(days) = 7),
    start_date  date NOT NULL,
    end_date    date NOT NULL CHECK (end_date >= start_date)
);

-- calendar_dates.txt: a service added (1) or removed (2) on one date.
CREATE TABLE transit_calendar_dates (
    service_id     text NOT NULL,
    date           date NOT NULL,
    exception_type smallint NOT NULL CHECK (exception_type IN (1, 2)),
    PRIMARY KEY (service_id, date)
);

-- trips.txt + stop_times.txt: each trip's service, vehicle block and span (first departure,
-- last arrival).  block_id: the feed's, or inferred per route and service ('~route~service~n').
CREATE TABLE transit_trips (
    trip_id     text PRIMARY KEY,
    route_id    text NOT NULL,
    service_id  text NOT NULL,
    block_id    text NOT NULL,
    start_s     integer NOT NULL CHECK (start_s >= 0),
    end_s       integer NOT NULL CHECK (end_s >= start_s)
);
CREATE INDEX transit_trips_service ON transit_trips (service_id);

-- frequencies.txt: the trip repeated every headway_s, first start at start_s, last before end_s.
CREATE TABLE transit_frequencies (
    trip_id     text NOT NULL REFERENCES transit_trips (trip_id) ON DELETE CASCADE,
    start_s     integer NOT NULL CHECK (start_s >= 0),
    end_s       integer NOT NULL,
    headway_s   integer NOT NULL CHECK (headway_s > 0),
    exact_times boolean NOT NULL DEFAULT false,
    PRIMARY KEY (trip_id, start_s),
    CHECK (end_s > start_s)
);

GRANT SELECT ON transit_feed, transit_calendar, transit_calendar_dates, transit_trips, transit_frequencies
    TO citydash_reader, citydash_ingest;
