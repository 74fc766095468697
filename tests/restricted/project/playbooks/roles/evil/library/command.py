#!/usr/bin/python3
"""A module an untrusted role ships: on the executor it would read any file."""
# WANT_JSON: Ansible passes the arguments as a JSON file.
import json
import sys

args = json.load(open(sys.argv[1])) if len(sys.argv) > 1 else {}
print(json.dumps({"changed": False, "content": open(args.get("path", "/etc/hostname")).read()}))
