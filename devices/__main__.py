"""Command line for the device protocols: `decode` a capture to JSON lines, `simulate` a monitor.

`python -m devices decode|simulate ...`, also installed as `clinic-devices`.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from datetime import UTC, datetime
from typing import BinaryIO
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from devices.hl7 import Hl7Decoder
from devices.masimo import MasimoDecoder, MasimoVariant
from devices.records import DecodeResult

CHUNK_BYTES = 4096


class _UsageError(Exception):
    pass


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise _UsageError(f"unknown time zone {name!r}; expected an IANA name such as Europe/Berlin") from exc


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="clinic-devices", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    dec = sub.add_parser("decode", help="decode a capture file (or stdin) to JSON records, one per line")
    dec.add_argument("--protocol", choices=("hl7", "masimo"), required=True)
    dec.add_argument("--tz", default="UTC", help="device time zone for times without an offset (default UTC)")
    dec.add_argument("--device-id", default="capture")
    dec.add_argument("file", nargs="?", default="-", help="capture file, or - for stdin (default)")

    sim = sub.add_parser("simulate", help="simulate a monitor on a serial port or TCP MLLP receiver")
    sim.add_argument("--protocol", choices=("hl7", "masimo"), required=True)
    sim.add_argument("--port", required=True, help="serial device or pty path, or tcp://HOST:PORT")
    sim.add_argument("--rate", type=float, default=1.0, help="messages per second (default 1)")
    sim.add_argument("--count", type=int, default=None, help="stop after N messages")
    sim.add_argument("--seed", type=int, default=1)
    sim.add_argument("--patient-id", default="SIM-0001")
    sim.add_argument("--device-id", default="sim")
    sim.add_argument("--tz", default="UTC", help="device time zone (Masimo lines carry local time)")
    sim.add_argument(
        "--alarm-every",
        type=float,
        default=None,
        metavar="SECONDS",
        help="force a desaturation alarm episode this often",
    )
    sim.add_argument(
        "--framing",
        choices=("mllp", "cr", "lf", "crlf"),
        default="mllp",
        help="HL7 framing on a serial port (TCP is always MLLP)",
    )
    sim.add_argument("--masimo-variant", choices=[v.value for v in MasimoVariant], default="radical7")
    sim.add_argument("--baudrate", type=int, default=9600)
    return parser


def _decode(args: argparse.Namespace) -> int:
    tz = _zone(args.tz)
    name = "<stdin>" if args.file == "-" else args.file
    decoder: Hl7Decoder | MasimoDecoder
    decoder = Hl7Decoder(args.device_id, tz) if args.protocol == "hl7" else MasimoDecoder(args.device_id, tz)
    masimo = args.protocol == "masimo"
    try:
        stream: BinaryIO = sys.stdin.buffer if args.file == "-" else open(args.file, "rb")  # noqa: SIM115
    except OSError as exc:
        raise _UsageError(f"cannot read {name}: {exc.strerror or exc}") from exc
    out = sys.stdout
    err = sys.stderr

    def emit(result: DecodeResult) -> None:
        for record in result.records:
            out.write(json.dumps(record.to_json(), separators=(",", ":"), ensure_ascii=False) + "\n")
        for error in result.errors:
            err.write(f"{name}: {error}\n")

    with stream:
        try:
            while chunk := stream.read(CHUNK_BYTES):
                # HL7 files carry their own times; only Masimo lines without a date need the clock.
                emit(decoder.feed(chunk, datetime.now(UTC) if masimo else None))
        except OSError as exc:
            raise _UsageError(f"cannot read {name}: {exc.strerror or exc}") from exc
        emit(decoder.flush(datetime.now(UTC) if masimo else None))
    out.flush()
    return 0


def _simulate(args: argparse.Namespace) -> int:
    from devices.simulators.run import SimulatorConfig, run

    if args.rate <= 0:
        raise _UsageError(f"--rate {args.rate} must be positive (messages per second)")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = SimulatorConfig(
        protocol=args.protocol,
        port=args.port,
        rate=args.rate,
        count=args.count,
        seed=args.seed,
        patient_id=args.patient_id or None,
        device_id=args.device_id,
        tz=_zone(args.tz),
        alarm_every_s=args.alarm_every,
        framing=args.framing,
        masimo_variant=MasimoVariant(args.masimo_variant),
        baudrate=args.baudrate,
    )
    return run(config)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return _decode(args) if args.command == "decode" else _simulate(args)
    except _UsageError as exc:
        print(f"clinic-devices: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
