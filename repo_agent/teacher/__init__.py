"""The offline teacher (the oracle): what it knows about a task, the wrong fixes it may try first, and
its policy over the conversation. Policy and rendering are separate: `policy.decide` returns an intent
(list / search / read / write / finish) that does not depend on a tool set; `models/oracle.py` renders
it for the JSON tool protocol.
"""
