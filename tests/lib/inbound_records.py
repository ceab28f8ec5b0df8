"""The inbound records a node left on disk (device-side/srup_inbound.c),
as the tests count them: one name per record file of its own (<id>.msg,
.acc, .out) and one "slots[N]" per slot of inbound/slots in use (its magic
set; a removed record's is zeroed)."""
import os

SLOT_SIZE = 4096  # SRUP_INBOUND_SLOT_SIZE
SLOT_MAGIC = b"SRUPSL1\0"


def inbound_records(state_dir):
    inbound = os.path.join(state_dir, "inbound")
    try:
        names = sorted(n for n in os.listdir(inbound) if not n.startswith("."))
    except FileNotFoundError:
        return []
    if "slots" not in names:
        return names
    names.remove("slots")
    with open(os.path.join(inbound, "slots"), "rb") as f:
        data = f.read()
    return names + ["slots[%d]" % i for i in range(len(data) // SLOT_SIZE)
                    if data[i * SLOT_SIZE:i * SLOT_SIZE + len(SLOT_MAGIC)] == SLOT_MAGIC]
