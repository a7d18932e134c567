"""berth's records and the rules that belong to them, free of AWS and HTTP.

The store returns and takes these records (never raw items); services decide with their rules.
Nothing here imports from `app` but the worker contract, so every rule is tested in
milliseconds (tests/unit/domain).
"""
