"""A python-mysql-replication consumer for make bench: reads the binlog from FILE:4 until ROWS row changes of
schema `bench` arrived, then prints {"rows": N, "seconds": S} as its last line.

Usage: pmr_consumer.py HOST PORT USER PASSWORD FILE ROWS
"""

import json
import sys
import time

from pymysqlreplication import BinLogStreamReader
from pymysqlreplication.row_event import DeleteRowsEvent, UpdateRowsEvent, WriteRowsEvent


def main():
    host, port, user, password, log_file, rows = sys.argv[1:7]
    wanted = int(rows)
    started = time.monotonic()
    stream = BinLogStreamReader(
        connection_settings={"host": host, "port": int(port), "user": user, "passwd": password},
        server_id=3_900_000_000 + int(time.time()) % 1_000_000,
        log_file=log_file,
        log_pos=4,
        resume_stream=True,
        blocking=False,
        only_events=[WriteRowsEvent, UpdateRowsEvent, DeleteRowsEvent],
        only_schemas=["bench"],
    )
    seen = 0
    for event in stream:
        # Touch every value, as a consumer does.
        for row in event.rows:
            seen += 1
            for image in row.values():
                if isinstance(image, dict):
                    for _ in image.values():
                        pass
        if seen >= wanted:
            break
    stream.close()
    print(json.dumps({"rows": seen, "seconds": time.monotonic() - started}))


if __name__ == "__main__":
    main()
