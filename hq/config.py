"""HQ's configuration: one TOML file validated at start by `gateway.tomlconfig` into `HqConfig`.

Every setting has a documented default; `python -m hq serve --config PATH --check-config` validates a file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from gateway.mqttlink import BrokerSection
from gateway.replication import ReplicationSection
from gateway.wire import valid_gateway_id


def _doc(text: str) -> dict[str, str]:
    return {"doc": text}


@dataclass(frozen=True)
class DatabaseSection:
    url: str = field(default="sqlite:////var/lib/clinic-hq/hq.db", metadata=_doc(
        "SQLAlchemy database URL: 'sqlite:////ABSOLUTE/PATH' for a small chain, "
        "'postgresql+psycopg://USER@HOST:PORT/DB' for a large one. Do not put the password here: use password_file."))
    password_file: Path | None = field(default=None, metadata=_doc(
        "File holding the database password (PostgreSQL); read at start and added to the URL."))
    pool_size: int = field(default=10, metadata=_doc("PostgreSQL: connections kept open in the pool."))
    max_overflow: int = field(default=10, metadata=_doc("PostgreSQL: extra connections allowed under load."))

    def __post_init__(self) -> None:
        if not (self.url.startswith("sqlite:") or self.url.startswith("postgresql")):
            raise ValueError(f"url {self.url!r} must start with 'sqlite:///' or 'postgresql+psycopg://'")
        if self.pool_size < 1 or self.max_overflow < 0:
            raise ValueError("pool_size must be >= 1 and max_overflow >= 0")


@dataclass(frozen=True)
class MqttSection(BrokerSection):
    client_id: str = field(default="hq-1", metadata=_doc(
        "MQTT client id of this HQ worker; unique per worker (workers share the data subscription)."))
    dynamic_security: bool = field(default=False, metadata=_doc(
        "Have the broker's dynamic-security plugin drop and deny a revoked gateway at once (commands on "
        "$CONTROL/dynamic-security/v1; the broker set up as in docs/broker.md). Off: a revoked gateway is refused "
        "only at its next TLS handshake after the broker reloads the CRL."))

    def __post_init__(self) -> None:
        super().__post_init__()
        if not valid_gateway_id(self.client_id):
            raise ValueError(f"client_id {self.client_id!r} must be 1-64 letters, digits, '-', '_' or '.'")


@dataclass(frozen=True)
class HttpSection:
    host: str = field(default="127.0.0.1", metadata=_doc(
        "Address the API and console listen on; put a TLS-terminating reverse proxy in front."))
    port: int = field(default=8080, metadata=_doc("Port the API and console listen on."))

    def __post_init__(self) -> None:
        if not 0 <= self.port < 65536:
            raise ValueError(f"port {self.port} must be 0-65535 (0: any free port)")


@dataclass(frozen=True)
class IngestSection:
    max_batch_records: int = field(default=10000, metadata=_doc(
        "Most readings committed in one database transaction."))
    flush_interval_ms: int = field(default=50, metadata=_doc(
        "Longest a received batch waits for others to share its transaction."))
    queue_max_batches: int = field(default=1000, metadata=_doc(
        "Batches waiting for the database writer, at most; beyond it batches are shed and the gateway "
        "resends them after its ack timeout."))
    offline_after_s: float = field(default=60.0, metadata=_doc(
        "A gateway not heard from (status or data) for this long is shown offline, even without a last will."))
    sweep_interval_s: float = field(default=5.0, metadata=_doc(
        "How often silent gateways are looked for."))

    def __post_init__(self) -> None:
        if self.max_batch_records < 1 or self.queue_max_batches < 1:
            raise ValueError("max_batch_records and queue_max_batches must be >= 1")
        if not 0 <= self.flush_interval_ms <= 10_000:
            raise ValueError(f"flush_interval_ms {self.flush_interval_ms} must be 0-10000")
        if self.offline_after_s <= 0 or self.sweep_interval_s <= 0:
            raise ValueError("offline_after_s and sweep_interval_s must be > 0")


@dataclass(frozen=True)
class ConsoleSection:
    recent_patients_s: int = field(default=3600, metadata=_doc(
        "The fleet page lists patients with readings within this many seconds."))
    trend_window_s: int = field(default=3600, metadata=_doc(
        "The patient page's trend charts start this many seconds back."))
    ws_queue_max: int = field(default=256, metadata=_doc(
        "Messages queued per WebSocket client; a slower client loses the oldest."))
    share_live: bool = field(default=False, metadata=_doc(
        "Pass live updates (readings, gateway changes, notices such as emergency offers) to the other HQ workers "
        "over MQTT (topic hq/live/<mqtt.client_id>), so that a console connected to any worker sees them: set "
        "it on every worker when several serve the console. The broker must let HQ use hq/live/#."))

    def __post_init__(self) -> None:
        if self.recent_patients_s < 1 or self.trend_window_s < 1 or self.ws_queue_max < 1:
            raise ValueError("recent_patients_s, trend_window_s and ws_queue_max must be >= 1")


@dataclass(frozen=True)
class CaSection:
    dir: Path = field(default=Path("/var/lib/clinic-hq/ca"), metadata=_doc(
        "HQ's certificate authority for the fleet: ca.key (mode 0600), ca.pem and crl.pem. Made by "
        "`python -m hq ca init`, or at the first enrolment if missing."))
    name: str = field(default="Clinic HQ fleet CA", metadata=_doc("Common name of the CA, when it is made."))
    ca_days: int = field(default=3650, metadata=_doc("Validity of the CA certificate, when it is made."))
    certificate_days: int = field(default=365, metadata=_doc(
        "Validity of a gateway's certificate. Gateways warn ahead of expiry; a gateway renews by enrolling again "
        "with a new token, which revokes its old certificate as superseded."))
    crl_file: Path | None = field(default=None, metadata=_doc(
        "Where HQ writes the revocation list the broker reads (its crlfile); default <dir>/crl.pem. Rewritten at "
        "every revocation: the broker must be reloaded (SIGHUP) when it changes, see docs/broker.md."))
    crl_days: int = field(default=365, metadata=_doc(
        "Validity (nextUpdate) of the revocation list; HQ writes a fresh one when half of it has passed. The "
        "broker refuses every client once the list it holds has expired."))

    def __post_init__(self) -> None:
        if not 1 <= self.certificate_days <= 825:
            raise ValueError(f"certificate_days {self.certificate_days} must be 1-825")
        if self.ca_days < 2 * self.certificate_days:
            raise ValueError(f"ca_days {self.ca_days} must be at least twice certificate_days")
        if not 2 <= self.crl_days <= 3650:
            raise ValueError(f"crl_days {self.crl_days} must be 2-3650")
        if not self.name.strip() or len(self.name) > 64:
            raise ValueError("name must be 1-64 characters")

    @property
    def crl_path(self) -> Path:
        return self.crl_file or self.dir / "crl.pem"


@dataclass(frozen=True)
class EnrolmentSection:
    token_ttl_h: float = field(default=24.0, metadata=_doc(
        "How long a new enrolment token can be used (a coordinator may ask for less). Each token enrols one "
        "gateway once."))

    def __post_init__(self) -> None:
        if not 0.05 <= self.token_ttl_h <= 24 * 30:
            raise ValueError(f"token_ttl_h {self.token_ttl_h} must be 0.05-720 (30 days)")


@dataclass(frozen=True)
class AuthSection:
    secure_cookies: bool = field(default=True, metadata=_doc(
        "Mark the session cookie Secure (sent over HTTPS only). Keep it on: HQ runs behind a TLS proxy. Turn it "
        "off only for a console reached over plain http on a test machine."))
    session_idle_s: int = field(default=8 * 3600, metadata=_doc(
        "A console session unused for this long ends; the user logs in again."))
    session_max_s: int = field(default=7 * 86400, metadata=_doc(
        "A console session ends this long after login, however active."))
    login_attempts: int = field(default=5, metadata=_doc(
        "Failed logins for one user name within login_window_s before further attempts are refused."))
    login_attempts_per_ip: int = field(default=20, metadata=_doc(
        "Failed logins from one address (any user names) within login_window_s before it is refused."))
    login_window_s: int = field(default=900, metadata=_doc(
        "The window over which failed logins are counted; refusals end when old failures leave it."))

    def __post_init__(self) -> None:
        if self.session_idle_s < 60 or self.session_max_s < self.session_idle_s:
            raise ValueError("session_idle_s must be >= 60 and session_max_s >= session_idle_s")
        if self.login_attempts < 1 or self.login_attempts_per_ip < 1 or self.login_window_s < 1:
            raise ValueError("login_attempts, login_attempts_per_ip and login_window_s must be >= 1")


@dataclass(frozen=True)
class SchedulingSection:
    reminder_before_s: int = field(default=3600, metadata=_doc(
        "A reminder goes to the clinic's gateway and the expert's console this long before an appointment."))
    reminder_poll_s: float = field(default=30.0, metadata=_doc(
        "How often appointments due for a reminder are looked for."))
    proposal_days: int = field(default=14, metadata=_doc(
        "Proposals for a clinic's request look this many days ahead (a request may ask for up to 60)."))
    proposals: int = field(default=6, metadata=_doc("Proposals offered per request, earliest first."))
    proposals_per_expert: int = field(default=3, metadata=_doc(
        "Of those, at most this many with the same expert (so that the clinic has a choice)."))
    min_notice_s: int = field(default=600, metadata=_doc(
        "Slots starting sooner than this are not proposed (the clinic needs time to prepare the patient)."))
    presence_refresh_s: float = field(default=5.0, metadata=_doc(
        "How often experts' free windows for emergency matching are computed again where their rules, leave or "
        "bookings changed (until then matching works them out from the rules, more slowly)."))

    def __post_init__(self) -> None:
        if self.reminder_before_s < 60 or self.reminder_poll_s <= 0:
            raise ValueError("reminder_before_s must be >= 60 and reminder_poll_s > 0")
        if not 1 <= self.proposal_days <= 60 or not 1 <= self.proposals <= 50 or self.proposals_per_expert < 1:
            raise ValueError("proposal_days must be 1-60, proposals 1-50 and proposals_per_expert >= 1")
        if self.min_notice_s < 0:
            raise ValueError("min_notice_s must be >= 0")
        if self.presence_refresh_s <= 0:
            raise ValueError("presence_refresh_s must be > 0")


@dataclass(frozen=True)
class ExpertsSection:
    capability_refresh_s: float = field(default=60.0, metadata=_doc(
        "How often every expert's capability figures (consultations done, response times, rating, advice "
        "adoption) are recomputed from the consultation history for matching and the directory; an expert's "
        "profile page always shows live figures."))

    def __post_init__(self) -> None:
        if not 5 <= self.capability_refresh_s <= 86_400:
            raise ValueError(f"capability_refresh_s {self.capability_refresh_s} must be 5-86400")


@dataclass(frozen=True)
class MetricsSection:
    time_zone: str = field(default="UTC", metadata=_doc(
        "IANA time zone of the metrics' hour of day and weekday (the demand heat map), e.g. Asia/Shanghai; "
        "daylight saving time is honoured. The API's tz parameter overrides it per request."))

    def __post_init__(self) -> None:
        import zoneinfo

        try:
            zoneinfo.ZoneInfo(self.time_zone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"time_zone {self.time_zone!r} is not an IANA time zone such as Asia/Shanghai") from None


@dataclass(frozen=True)
class ConsultationsSection:
    offers_per_round: int = field(default=3, metadata=_doc(
        "N: experts offered a consultation at once; the first to accept takes it, the others are withdrawn."))
    offer_timeout_s: float = field(default=60.0, metadata=_doc(
        "T for emergencies: a round nobody accepted within this long escalates to the next N experts and the "
        "on-call coordinators."))
    urgent_offer_timeout_s: float = field(default=300.0, metadata=_doc("T for urgent consultations."))
    routine_offer_timeout_s: float = field(default=3600.0, metadata=_doc(
        "T for routine consultations requested without a booked slot."))
    max_rounds: int = field(default=3, metadata=_doc(
        "Rounds of offers at most; after them (or when no expert is left) the coordinators must assign it."))
    form_deadline_s: float = field(default=600.0, metadata=_doc(
        "The short form (chief complaint, preliminary diagnosis, question) of an emergency is due this long after "
        "the click; later it is flagged overdue and the coordinators are told."))
    on_call_coordinators: tuple[str, ...] = field(default=(), metadata=_doc(
        "User names of the on-call coordinators told of escalations and overdue forms; empty: every coordinator."))
    sweep_interval_s: float = field(default=1.0, metadata=_doc(
        "Longest wait between checks for rounds that timed out and forms that became overdue (state is in the "
        "database: a restarted HQ carries on where it stopped)."))
    vitals_window_s: int = field(default=600, metadata=_doc(
        "HQ attaches its own newest readings of the patient from this far back to a new consultation."))
    report_font: Path = field(default=Path("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc"), metadata=_doc(
        "TrueType font (TTF/TTC) with Chinese glyphs embedded in PDF reports (Debian: fonts-wqy-microhei)."))

    def __post_init__(self) -> None:
        if self.offers_per_round < 1 or self.max_rounds < 1:
            raise ValueError("offers_per_round and max_rounds must be >= 1")
        if min(self.offer_timeout_s, self.urgent_offer_timeout_s, self.routine_offer_timeout_s) <= 0:
            raise ValueError("offer_timeout_s, urgent_offer_timeout_s and routine_offer_timeout_s must be > 0")
        if self.form_deadline_s <= 0 or self.sweep_interval_s <= 0 or self.vitals_window_s < 0:
            raise ValueError("form_deadline_s and sweep_interval_s must be > 0, vitals_window_s >= 0")

    def timeout_s(self, kind: str) -> float:
        return {"urgent": self.urgent_offer_timeout_s, "routine": self.routine_offer_timeout_s}.get(
            kind, self.offer_timeout_s)


@dataclass(frozen=True)
class RecordsSection:
    attachments_dir: Path = field(default=Path("/var/lib/clinic-hq/attachments"), metadata=_doc(
        "Where uploaded imaging (DICOM) files are kept, each once, under its sha256 (ab/cd/abcd...). Back it up "
        "with the database: the database holds only the path. Created at the first upload."))
    max_upload_bytes: int = field(default=512 * 1024**2, metadata=_doc(
        "Largest DICOM file accepted in one upload; a larger one is refused (413) before it is stored."))
    timeline_days: int = field(default=30, metadata=_doc(
        "Days a patient's timeline shows at once (older days page in); at most 366."))
    search_results: int = field(default=50, metadata=_doc("Patients one search returns at most."))
    rollup_interval_s: float = field(default=2.0, metadata=_doc(
        "How often new readings are summed into the timeline's daily summaries (and device patient ids HQ "
        "does not know get a record)."))
    rollup_chunk_rows: int = field(default=20_000, metadata=_doc(
        "Readings summed per transaction: small enough that ingest never waits long for the database."))

    def __post_init__(self) -> None:
        if self.max_upload_bytes < 1024:
            raise ValueError(f"max_upload_bytes {self.max_upload_bytes} must be at least 1024")
        if not 1 <= self.timeline_days <= 366:
            raise ValueError(f"timeline_days {self.timeline_days} must be 1-366")
        if not 1 <= self.search_results <= 500:
            raise ValueError(f"search_results {self.search_results} must be 1-500")
        if self.rollup_interval_s <= 0 or self.rollup_chunk_rows < 100:
            raise ValueError("rollup_interval_s must be > 0 and rollup_chunk_rows >= 100")


@dataclass(frozen=True)
class CallsSection:
    stun_urls: list[str] = field(default_factory=list, metadata=_doc(
        "STUN servers for browsers and gateways, e.g. ['stun:turn.example.org:3478']."))
    turn_urls: list[str] = field(default_factory=list, metadata=_doc(
        "TURN servers, e.g. ['turn:turn.example.org:3478?transport=udp'] (coturn); each participant and the "
        "gateway get a time-limited credential made with turn_secret_file."))
    turn_secret_file: Path | None = field(default=None, metadata=_doc(
        "File holding the TURN server's shared secret (coturn static-auth-secret, TURN REST API)."))
    turn_credential_ttl_s: int = field(default=12 * 3600, metadata=_doc(
        "How long a TURN credential HQ hands out stays valid."))
    relay_only: bool = field(default=False, metadata=_doc(
        "Media goes through TURN only (browsers and gateways use relay candidates): works through the "
        "strictest firewalls and hides addresses, at the cost of the TURN server's bandwidth."))
    camera_slots: int = field(default=2, metadata=_doc("Clinic cameras a participant's screen shows at most."))
    party_slots: int = field(default=3, metadata=_doc(
        "Other participants (voice and camera) a screen receives at most."))
    resume_grace_s: float = field(default=60.0, metadata=_doc(
        "A participant whose connection dropped (e.g. a change of network) comes back within this time "
        "without re-joining; after it the gateway is told they left."))
    alert_loss_pct: float = field(default=5.0, metadata=_doc("Alert when a stream loses more packets than this."))
    alert_rtt_ms: float = field(default=400.0, metadata=_doc("Alert when a round trip takes longer than this."))
    alert_jitter_ms: float = field(default=60.0, metadata=_doc("Alert when a stream's jitter exceeds this."))
    alert_min_fps: float = field(default=8.0, metadata=_doc(
        "Alert when video that should be flowing runs below this frame rate (0: the picture froze)."))
    quality_retention_days: int = field(default=90, metadata=_doc(
        "Call-quality samples older than this are deleted (alerts are kept)."))

    def __post_init__(self) -> None:
        for url in self.stun_urls:
            if not url.startswith(("stun:", "stuns:")):
                raise ValueError(f"stun_urls: {url!r} must start with 'stun:' or 'stuns:'")
        for url in self.turn_urls:
            if not url.startswith(("turn:", "turns:")):
                raise ValueError(f"turn_urls: {url!r} must start with 'turn:' or 'turns:'")
        if self.turn_urls and self.turn_secret_file is None:
            raise ValueError("turn_urls need turn_secret_file (the TURN server's shared secret)")
        if self.relay_only and not self.turn_urls:
            raise ValueError("relay_only needs turn_urls: without a TURN server no media could flow")
        if not 60 <= self.turn_credential_ttl_s <= 7 * 86400:
            raise ValueError(f"turn_credential_ttl_s {self.turn_credential_ttl_s} must be 60-604800")
        if not 1 <= self.camera_slots <= 8 or not 1 <= self.party_slots <= 8:
            raise ValueError("camera_slots and party_slots must be 1-8")
        if self.resume_grace_s <= 0 or self.quality_retention_days < 1:
            raise ValueError("resume_grace_s must be > 0 and quality_retention_days >= 1")
        if min(self.alert_loss_pct, self.alert_rtt_ms, self.alert_jitter_ms, self.alert_min_fps) < 0:
            raise ValueError("alert thresholds must not be negative")

    def secret_files(self) -> list[Path]:
        return [] if self.turn_secret_file is None else [self.turn_secret_file]


@dataclass(frozen=True)
class RecordingsSection:
    dir: Path = field(default=Path("/var/lib/clinic-hq/recordings"), metadata=_doc(
        "Where uploaded consultation recordings are stored (shared storage when several HQ workers run)."))
    max_bytes: int = field(default=16 * 1024**3, metadata=_doc("A larger recording is refused."))

    def __post_init__(self) -> None:
        if self.max_bytes < 1024**2:
            raise ValueError(f"max_bytes {self.max_bytes} must be at least 1 MiB")


@dataclass(frozen=True)
class HqConfig:
    database: DatabaseSection = field(default_factory=DatabaseSection, metadata=_doc("[database]"))
    mqtt: MqttSection = field(default_factory=MqttSection, metadata=_doc("[mqtt]"))
    http: HttpSection = field(default_factory=HttpSection, metadata=_doc("[http]"))
    ingest: IngestSection = field(default_factory=IngestSection, metadata=_doc("[ingest]"))
    console: ConsoleSection = field(default_factory=ConsoleSection, metadata=_doc("[console]"))
    auth: AuthSection = field(default_factory=AuthSection, metadata=_doc("[auth] console accounts and sessions"))
    scheduling: SchedulingSection = field(default_factory=SchedulingSection, metadata=_doc(
        "[scheduling] experts' slots, bookings and reminders"))
    consultations: ConsultationsSection = field(default_factory=ConsultationsSection, metadata=_doc(
        "[consultations] dispatch, escalation, short-form deadline, reports"))
    records: RecordsSection = field(default_factory=RecordsSection, metadata=_doc(
        "[records] shared patient records: imaging files, timeline, search"))
    experts: ExpertsSection = field(default_factory=ExpertsSection, metadata=_doc("[experts] the expert directory"))
    metrics: MetricsSection = field(default_factory=MetricsSection, metadata=_doc("[metrics] consultation metrics"))
    replication: ReplicationSection = field(default_factory=ReplicationSection, metadata=_doc(
        "[replication] Litestream, for a SQLite database (PostgreSQL has its own replication)."))
    ca: CaSection = field(default_factory=CaSection, metadata=_doc("[ca] the fleet's certificate authority"))
    enrolment: EnrolmentSection = field(default_factory=EnrolmentSection, metadata=_doc("[enrolment]"))
    calls: CallsSection = field(default_factory=CallsSection, metadata=_doc("[calls] video consultations"))
    recordings: RecordingsSection = field(default_factory=RecordingsSection, metadata=_doc(
        "[recordings] consultation recordings uploaded by the gateways"))
