"""mdrelay wire protocol v1: a subscriber client (Python 3.10+, standard library only).

Written from docs/PROTOCOL.md alone, as a check that the document is enough to build a client.
Modules: ``protocol`` (constants, errors, typed message dataclasses, frame decoder),
``client`` (``RelayClient``: connection, id table, sequence checks, books), ``render`` (JSON and
text lines), ``dataframe`` (``to_pandas()``; needs pandas, the rest does not), ``cli`` (the
``mdrelay-client`` command), ``selftest`` (golden vectors). Everything public is re-exported
here.

Library use::

    from mdrelay_client import RelayClient, Trade
    with RelayClient("/run/user/1000/mdrelay/relay.sock") as client:
        for msg in client:
            if isinstance(msg, Trade):
                print(client.name_of(msg.header.instrument_id), msg.price, msg.size)

    with RelayClient() as client:  # default socket path (PROTOCOL.md §1)
        df = client.collect(1000, types=(Trade,)).to_pandas()  # pip install 'mdrelay-client[pandas]'

Command line::

    mdrelay-client --socket PATH [--count N] [--json] [--summary] [--quiet] [--timeout SECS]
                   [--venue V] [--symbol GLOB] [--kind trade,quote,...]
    mdrelay-client --selftest
"""

from .cli import main
from .client import (
    Book,
    Gap,
    InstrumentSeq,
    RelayClient,
    SequenceChecker,
    default_socket_path,
)
from .dataframe import PANDAS_MISSING, Messages, to_pandas
from .protocol import (
    ABSENT,
    BAR,
    BOOK_DELTA,
    BOOK_SNAPSHOT,
    DEFAULT_PRICE_EXPONENT,
    DERIVATIVE_TYPES,
    FLAG_BOOK_MAY_BE_BAD,
    FLAG_CACHED,
    FLAG_LAST_IN_EVENT,
    FLAG_SNAPSHOT,
    HEADER_LEN,
    HEARTBEAT,
    INSTRUMENT_DEF,
    KIND_BITS,
    LIQUIDATION,
    LIQUIDATION_STATUSES,
    MAGIC,
    MARK,
    MARKET_DATA_TYPES,
    MAX_PAYLOAD,
    OPEN_INTEREST,
    QUOTE,
    RATE_EXPONENT,
    SIDES,
    STATUS,
    STATUS_CODES,
    STATUS_DROPPED,
    SUBSCRIBE,
    TRADE,
    TRAILER_LEN,
    TYPE_NAMES,
    UNSUBSCRIBE,
    VERSION,
    BadCrc,
    BadLength,
    BadMagic,
    Bar,
    BookDelta,
    BookSnapshot,
    FatalProtocolError,
    FrameDecoder,
    Header,
    Heartbeat,
    InstrumentDef,
    Level,
    Liquidation,
    MalformedPayload,
    Mark,
    Message,
    NameConflict,
    OpenInterest,
    ProtocolError,
    Quote,
    Status,
    StreamRuleViolation,
    Trade,
    Truncated,
    Unknown,
    UnsupportedVersion,
    decode_message,
    encode_request,
    fixed,
    fmt_decimal,
    fnv1a32,
    instrument_id,
)
from .render import to_json, to_text
from .selftest import selftest

__version__ = "0.1.0"

__all__ = [
    "ABSENT", "BAR", "BOOK_DELTA", "BOOK_SNAPSHOT", "DEFAULT_PRICE_EXPONENT", "DERIVATIVE_TYPES",
    "FLAG_BOOK_MAY_BE_BAD", "FLAG_CACHED", "FLAG_LAST_IN_EVENT", "FLAG_SNAPSHOT", "HEADER_LEN",
    "HEARTBEAT", "INSTRUMENT_DEF", "KIND_BITS", "LIQUIDATION", "LIQUIDATION_STATUSES", "MAGIC",
    "MARK", "MARKET_DATA_TYPES", "MAX_PAYLOAD", "OPEN_INTEREST", "PANDAS_MISSING", "QUOTE",
    "RATE_EXPONENT", "SIDES", "STATUS", "STATUS_CODES", "STATUS_DROPPED",
    "SUBSCRIBE", "TRADE", "TRAILER_LEN",
    "TYPE_NAMES", "UNSUBSCRIBE", "VERSION",
    "BadCrc", "BadLength", "BadMagic", "Bar", "Book", "BookDelta", "BookSnapshot",
    "FatalProtocolError", "FrameDecoder", "Gap", "Header", "Heartbeat", "InstrumentDef",
    "InstrumentSeq", "Level", "Liquidation", "MalformedPayload", "Mark", "Message", "Messages",
    "NameConflict", "OpenInterest", "ProtocolError", "Quote", "RelayClient", "SequenceChecker",
    "Status", "StreamRuleViolation", "Trade", "Truncated", "Unknown", "UnsupportedVersion",
    "decode_message", "default_socket_path", "encode_request", "fixed", "fmt_decimal", "fnv1a32",
    "instrument_id", "main", "selftest", "to_json", "to_pandas", "to_text", "__version__",
]
