"""Consumes a canal-rs destination with the canal-python 0.4 client from PyPI and prints what it received.

Usage: canal_python_check.py HOST PORT DESTINATION FILTER EXPECTED_ROWS
The last stdout line is `RESULT <json>`: a list of row changes as
{"schema", "table", "type", "isDdl", "columns": {name: {"value", "isNull", "sqlType", "mysqlType", "isKey", "updated"}}}.
"""
import json
import sys
import time

from canal.client import Client
from canal.protocol import EntryProtocol_pb2


def main():
    host, port, destination, table_filter, expected = sys.argv[1:6]
    expected = int(expected)
    client = Client()
    client.connect(host=host, port=int(port))
    client.check_valid(username=b'', password=b'')
    client.subscribe(client_id=b'1001', destination=destination.encode(), filter=table_filter.encode())

    changes = []
    deadline = time.time() + 60
    while len(changes) < expected and time.time() < deadline:
        message = client.get(100)
        if not message['entries']:
            time.sleep(0.1)
            continue
        for entry in message['entries']:
            if entry.entryType != EntryProtocol_pb2.EntryType.ROWDATA:
                continue
            row_change = EntryProtocol_pb2.RowChange()
            row_change.MergeFromString(entry.storeValue)
            for row in row_change.rowDatas:
                columns = row.afterColumns if len(row.afterColumns) else row.beforeColumns
                changes.append({
                    'schema': entry.header.schemaName,
                    'table': entry.header.tableName,
                    'type': EntryProtocol_pb2.EventType.Name(row_change.eventType),
                    'isDdl': row_change.isDdl,
                    'columns': {
                        c.name: {
                            'value': c.value,
                            'isNull': c.isNull,
                            'sqlType': c.sqlType,
                            'mysqlType': c.mysqlType,
                            'isKey': c.isKey,
                            'updated': c.updated,
                        }
                        for c in columns
                    },
                })
    client.disconnect()
    print('RESULT ' + json.dumps(changes))


if __name__ == '__main__':
    main()
