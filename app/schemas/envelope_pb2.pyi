from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class FeatureEvent(_message.Message):
    __slots__ = ("entity", "version", "event_time", "payload")
    ENTITY_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    EVENT_TIME_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    entity: str
    version: str
    event_time: str
    payload: bytes
    def __init__(self, entity: _Optional[str] = ..., version: _Optional[str] = ..., event_time: _Optional[str] = ..., payload: _Optional[bytes] = ...) -> None: ...
