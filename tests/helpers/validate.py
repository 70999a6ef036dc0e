# Validates JSON documents, one per line of a file, against a JSON Schema
# (draft 2020-12) with python3-jsonschema: prints each mismatch and why,
# then "checked N"; exits 1 on a mismatch or when there was nothing to
# check.
import json, sys

import jsonschema

schema = json.load(open(sys.argv[1]))
jsonschema.Draft202012Validator.check_schema(schema)
validator = jsonschema.Draft202012Validator(schema)
checked = bad = 0
for line in open(sys.argv[2]):
    if not line.strip():
        continue
    checked += 1
    for error in validator.iter_errors(json.loads(line)):
        bad += 1
        print(f"{error.message} in {line.strip()[:400]}")
print(f"checked {checked}")
sys.exit(1 if bad or checked == 0 else 0)
