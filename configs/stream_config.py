"""The `stream:` section of a run config: daily operation (the interval grid, the refresh policy) and the cron
schedule derived from it.

    from configs.stream_config import StreamConfig, cron_schedule
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from pydantic import Field, model_validator

from configs.strict import Strict as _Strict


def interval_tag(end: datetime) -> str:
    """How an interval end names its per-interval files (stats directory, history row): UTC, to the minute."""
    return f"{end.astimezone(timezone.utc):%Y-%m-%dT%H%M}"


class RefreshPolicy(_Strict):
    """When a user's profile is written again (LIBER / KAR "new partitions only"): at an interval end, a user gets a
    new profile when at least `min_new_interactions` arrived since the last one, or when at least one did and the
    last profile is `max_age_days` old or older. A user without a profile gets one once they have
    `min_new_interactions`."""

    min_new_interactions: int = Field(3, ge=1)
    max_age_days: float = Field(7.0, gt=0)


class StreamConfig(_Strict):
    """Daily operation (augment/data/stream_split.py): the log is read as of an interval end, never past it.

    The bootstrap run ends at `start` and covers everything before it; every later run ends `interval_hours` after
    the one before (the DAG's data_interval_end). `end` is the interval end of one run: set by the DAG from its data
    interval (or by hand: --set stream.end=...), never in the YAML of a scheduled deployment.

    The log is one table (data.generic.interactions, read up to `end`), or with `partitions` one file per interval
    (augment/data/ingest.py): data.generic.interactions is then the bootstrap part (everything before `start`) and the
    interval [s, s + interval) is the file `partitions.format(start=s)`, with the same column map."""

    start: datetime = Field(description="the bootstrap run's end; later runs end on start + k * interval_hours")
    interval_hours: int = Field(24, ge=1, description="one run per interval; the DAG's cron is derived from it "
                                "(cron_schedule): a divisor of 24")
    end: datetime | None = Field(None, description="this run's interval end (data_interval_end)")
    # The gate's window. One ML-100K day holds 36-700 labelled rows: a paired AUC interval on one day is 3-7 points
    # wide, so the gate decides nothing. A window of W intervals gives it W days of rows; the price is that every
    # model of the run trains on data W intervals older (docs/daily-operation.md).
    test_intervals: int = Field(1, ge=1, description="the newest intervals: held out from training and valid, "
                                "the champion and the challenger are compared on them (the gate's window)")
    valid_intervals: int = Field(1, ge=1, description="the intervals before the gate's window that select models")
    refresh: RefreshPolicy = RefreshPolicy()
    fresh_features: bool = Field(True, description="after the gate, serve the champion with this run's feature "
                                 "versions that are compatible with it (models/feature_refresh.py); false: the "
                                 "versions it was trained on")
    partitions: str | None = Field(None, description="one log file per interval: a path template formatted with "
                                   "str.format(start=<interval start>), e.g. data/events/ds={start:%Y-%m-%d}.csv "
                                   "(relative to the repository root; data.source generic only)")

    @model_validator(mode="after")
    def _on_grid(self) -> "StreamConfig":
        for name in ("start", "end"):
            value = getattr(self, name)
            if value is not None and value.tzinfo is None:  # a naive time would be read in the worker's zone
                setattr(self, name, value.replace(tzinfo=timezone.utc))
        if self.end is not None:
            steps = (self.end - self.start) / self.interval
            if self.end < self.start or steps != int(steps):
                raise ValueError(f"stream.end {self.end.isoformat()} is not on the interval grid: start "
                                 f"{self.start.isoformat()} + k * {self.interval_hours} h, k >= 0")
        if self.partitions is not None:
            try:
                paths = [self.partition_path(s) for s in (self.start, self.start + self.interval)]
            except (KeyError, IndexError, ValueError, AttributeError) as err:
                raise ValueError(f"stream.partitions {self.partitions!r} is not a path template of {{start}}: "
                                 f"{type(err).__name__}: {err}") from None
            # Two intervals in one file would be read twice (or half of it never), e.g. a daily name for hourly runs.
            if paths[0] == paths[1]:
                raise ValueError(f"stream.partitions {self.partitions!r} names one file ({paths[0]}) for two "
                                 f"intervals: it must tell interval starts {self.interval_hours} h apart")
        return self

    @property
    def interval(self) -> timedelta:
        return timedelta(hours=self.interval_hours)

    @property
    def cron(self) -> str:
        """augment_features' schedule: one run per interval, on the grid of `start`."""
        return cron_schedule(self.interval_hours, self.start)

    def latest_end(self, now: datetime) -> datetime:
        """The end of the newest interval complete at `now`: start + k * interval <= now, k >= 0 (a manual run's
        default interval; before `start` there is none)."""
        now = now if now.tzinfo is not None else now.replace(tzinfo=timezone.utc)
        if now < self.start:
            raise ValueError(f"no interval is complete yet: the bootstrap interval ends at stream.start "
                             f"{self.start.isoformat()}, after now ({now.isoformat()})")
        return self.start + int((now - self.start) / self.interval) * self.interval

    @property
    def run_kind(self) -> str:
        """"bootstrap" for the run that ends at `start`, else "interval"."""
        return "bootstrap" if self.require_end() == self.start else "interval"

    def require_end(self) -> datetime:
        if self.end is None:
            raise ValueError("stream.end is not set: the DAG sets it from data_interval_end; by hand pass "
                             "--set stream.end=<interval end>")
        return self.end

    @property
    def test_from(self) -> datetime:
        """The start of the gate's window: the newest `test_intervals` intervals up to `end`."""
        return self.require_end() - self.interval * self.test_intervals

    @property
    def valid_from(self) -> datetime:
        return self.test_from - self.interval * self.valid_intervals

    def intervals(self) -> list[tuple[datetime, datetime]]:
        """[(s, s + interval)] for every interval after `start` that ends by `end`, oldest first (none for the
        bootstrap run)."""
        n = round((self.require_end() - self.start) / self.interval)
        return [(self.start + k * self.interval, self.start + (k + 1) * self.interval) for k in range(n)]

    def partition_path(self, interval_start: datetime) -> str:
        """The `partitions` file of the interval starting at `interval_start`, as configured (maybe relative)."""
        if self.partitions is None:
            raise ValueError("stream.partitions is not set: the log is one table")
        return self.partitions.format(start=interval_start)


def cron_schedule(interval_hours: int | None = None, start: datetime | None = None) -> str:
    """The UTC cron of one run every `interval_hours` (default: StreamConfig's) whose intervals end on the grid of
    `start` (default midnight): "0 0 * * *" daily, "0 0,6,12,18 * * *" every 6 h. Cron repeats within a day, so
    the interval must divide 24 h and `start` be on a whole minute."""
    hours = StreamConfig.model_fields["interval_hours"].default if interval_hours is None else interval_hours
    if hours < 1 or 24 % hours:
        raise ValueError(f"stream.interval_hours={hours}: a schedule needs a divisor of 24 (1, 2, 3, 4, 6, 8, 12, 24)")
    at = (start or datetime(1970, 1, 1, tzinfo=timezone.utc)).astimezone(timezone.utc)
    if at.second or at.microsecond:
        raise ValueError(f"stream.start {at.isoformat()}: a schedule needs a start on a whole minute")
    ends = sorted((at.hour + k * hours) % 24 for k in range(24 // hours))
    when = "*" if hours == 1 else ",".join(map(str, ends))
    return f"{at.minute} {when} * * *"
