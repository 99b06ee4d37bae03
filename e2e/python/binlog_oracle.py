"""An independent decoder of row events for instance/tests/value_oracle.rs.

Reads the binlog of a MySQL/MariaDB server as a replica with python-mysql-replication (see
oracle-requirements.txt), from FILE:POS to the current end (non-blocking), and prints one JSON line per row image
of the tables of SCHEMA:

    {"table": "t", "event": "insert|update|delete", "image": "before|after", "values": {"col": VALUE, ...}}

VALUE is a tagged, JSON-safe rendering of what the library returned, kept lossless and free of interpretation:

    {"t": "null"}                      SQL NULL
    {"t": "none", "why": "..."}        the library returned None for a non-NULL value (its `none_sources` reason,
                                       e.g. "out of date range" for zero dates, "empty set")
    {"t": "int", "v": "-128"}          Python int (as text: it may exceed 2^53)
    {"t": "float", "v": "1.5"}         Python float, repr() (round-trips exactly)
    {"t": "decimal", "v": "500.00"}    decimal.Decimal, plain notation with its exponent kept (format "f")
    {"t": "str", "v": "..."}           str
    {"t": "bytes", "v": "00ff"}        bytes, lowercase hex
    {"t": "date", "v": "2024-02-29"}   datetime.date
    {"t": "datetime", "v": "2024-01-02 03:04:05.000000"}   datetime.datetime (naive), always 6 fraction digits
    {"t": "timedelta", "v": "-3723000004"}                 datetime.timedelta in whole microseconds
    {"t": "set", "v": ["x", "z"]}      set, sorted
    {"t": "json", "v": "..."}          dict/list (MySQL binary JSON), json.dumps

Usage: binlog_oracle.py HOST PORT USER PASSWORD FILE POS SCHEMA SERVER_ID
"""

import datetime
import decimal
import json
import sys

from pymysqlreplication import BinLogStreamReader
from pymysqlreplication.row_event import DeleteRowsEvent, UpdateRowsEvent, WriteRowsEvent


def tagged(value, none_sources, name):
    if value is None:
        why = none_sources.get(name, "null")
        return {"t": "null"} if why == "null" else {"t": "none", "why": why}
    if isinstance(value, bool):
        return {"t": "int", "v": str(int(value))}
    if isinstance(value, int):
        return {"t": "int", "v": str(value)}
    if isinstance(value, float):
        return {"t": "float", "v": repr(value)}
    if isinstance(value, decimal.Decimal):
        return {"t": "decimal", "v": format(value, "f")}
    if isinstance(value, str):
        return {"t": "str", "v": value}
    if isinstance(value, (bytes, bytearray)):
        return {"t": "bytes", "v": bytes(value).hex()}
    # datetime.datetime is a subclass of datetime.date: test it first.
    if isinstance(value, datetime.datetime):
        return {"t": "datetime", "v": value.isoformat(sep=" ", timespec="microseconds")}
    if isinstance(value, datetime.date):
        return {"t": "date", "v": value.isoformat()}
    if isinstance(value, datetime.timedelta):
        return {"t": "timedelta", "v": str(value // datetime.timedelta(microseconds=1))}
    if isinstance(value, (set, frozenset)):
        return {"t": "set", "v": sorted(value)}
    if isinstance(value, (dict, list)):
        return {"t": "json", "v": json.dumps(value, ensure_ascii=False, sort_keys=True)}
    return {"t": "unknown", "type": type(value).__name__, "v": repr(value)}


def image(table, event, which, values, none_sources):
    rendered = {name: tagged(v, none_sources, name) for name, v in values.items()}
    return json.dumps({"table": table, "event": event, "image": which, "values": rendered}, ensure_ascii=False)


def main():
    host, port, user, password, log_file, log_pos, schema, server_id = sys.argv[1:9]
    stream = BinLogStreamReader(
        connection_settings={"host": host, "port": int(port), "user": user, "passwd": password},
        server_id=int(server_id),
        resume_stream=True,
        log_file=log_file,
        log_pos=int(log_pos),
        blocking=False,
        only_events=[WriteRowsEvent, UpdateRowsEvent, DeleteRowsEvent],
        only_schemas=[schema],
        # The library decodes latin1 as Python's cp1252, which has no character for 0x81, 0x8D, 0x8F, 0x90 and
        # 0x9D (MySQL maps them to U+0081...); strict decoding would abort the whole stream on such a value.
        ignore_decode_errors=True,
        enable_logging=False,
    )
    out = sys.stdout
    try:
        for event in stream:
            for row in event.rows:
                if isinstance(event, WriteRowsEvent):
                    out.write(image(event.table, "insert", "after", row["values"], row["none_sources"]) + "\n")
                elif isinstance(event, DeleteRowsEvent):
                    out.write(image(event.table, "delete", "before", row["values"], row["none_sources"]) + "\n")
                else:
                    out.write(
                        image(event.table, "update", "before", row["before_values"], row["before_none_sources"])
                        + "\n"
                    )
                    out.write(
                        image(event.table, "update", "after", row["after_values"], row["after_none_sources"]) + "\n"
                    )
    finally:
        stream.close()
    out.flush()


if __name__ == "__main__":
    main()
