import datetime

from app.schemas import options_pb2 as _options_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class UserActivity(_message.Message):
    __slots__ = ("user_id", "likes_sent_7d", "likes_received_7d", "matches_7d", "messages_received_7d", "replies_sent_7d", "sessions_7d", "last_active_time")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    LIKES_SENT_7D_FIELD_NUMBER: _ClassVar[int]
    LIKES_RECEIVED_7D_FIELD_NUMBER: _ClassVar[int]
    MATCHES_7D_FIELD_NUMBER: _ClassVar[int]
    MESSAGES_RECEIVED_7D_FIELD_NUMBER: _ClassVar[int]
    REPLIES_SENT_7D_FIELD_NUMBER: _ClassVar[int]
    SESSIONS_7D_FIELD_NUMBER: _ClassVar[int]
    LAST_ACTIVE_TIME_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    likes_sent_7d: int
    likes_received_7d: int
    matches_7d: int
    messages_received_7d: int
    replies_sent_7d: int
    sessions_7d: int
    last_active_time: _timestamp_pb2.Timestamp
    def __init__(self, user_id: _Optional[str] = ..., likes_sent_7d: _Optional[int] = ..., likes_received_7d: _Optional[int] = ..., matches_7d: _Optional[int] = ..., messages_received_7d: _Optional[int] = ..., replies_sent_7d: _Optional[int] = ..., sessions_7d: _Optional[int] = ..., last_active_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...
