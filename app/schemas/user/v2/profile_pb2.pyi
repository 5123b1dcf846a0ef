import datetime

from app.schemas import options_pb2 as _options_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Gender(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    GENDER_UNSPECIFIED: _ClassVar[Gender]
    GENDER_WOMAN: _ClassVar[Gender]
    GENDER_MAN: _ClassVar[Gender]
    GENDER_NONBINARY: _ClassVar[Gender]
GENDER_UNSPECIFIED: Gender
GENDER_WOMAN: Gender
GENDER_MAN: Gender
GENDER_NONBINARY: Gender

class Preferences(_message.Message):
    __slots__ = ("age_min", "age_max", "max_distance_km", "genders")
    AGE_MIN_FIELD_NUMBER: _ClassVar[int]
    AGE_MAX_FIELD_NUMBER: _ClassVar[int]
    MAX_DISTANCE_KM_FIELD_NUMBER: _ClassVar[int]
    GENDERS_FIELD_NUMBER: _ClassVar[int]
    age_min: int
    age_max: int
    max_distance_km: float
    genders: _containers.RepeatedScalarFieldContainer[Gender]
    def __init__(self, age_min: _Optional[int] = ..., age_max: _Optional[int] = ..., max_distance_km: _Optional[float] = ..., genders: _Optional[_Iterable[_Union[Gender, str]]] = ...) -> None: ...

class UserProfile(_message.Message):
    __slots__ = ("user_id", "age", "gender", "latitude", "longitude", "photo_count", "bio_length", "profile_completeness", "signup_time", "city", "preferences", "photo_quality_score")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    AGE_FIELD_NUMBER: _ClassVar[int]
    GENDER_FIELD_NUMBER: _ClassVar[int]
    LATITUDE_FIELD_NUMBER: _ClassVar[int]
    LONGITUDE_FIELD_NUMBER: _ClassVar[int]
    PHOTO_COUNT_FIELD_NUMBER: _ClassVar[int]
    BIO_LENGTH_FIELD_NUMBER: _ClassVar[int]
    PROFILE_COMPLETENESS_FIELD_NUMBER: _ClassVar[int]
    SIGNUP_TIME_FIELD_NUMBER: _ClassVar[int]
    CITY_FIELD_NUMBER: _ClassVar[int]
    PREFERENCES_FIELD_NUMBER: _ClassVar[int]
    PHOTO_QUALITY_SCORE_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    age: int
    gender: Gender
    latitude: float
    longitude: float
    photo_count: int
    bio_length: int
    profile_completeness: float
    signup_time: _timestamp_pb2.Timestamp
    city: str
    preferences: Preferences
    photo_quality_score: int
    def __init__(self, user_id: _Optional[str] = ..., age: _Optional[int] = ..., gender: _Optional[_Union[Gender, str]] = ..., latitude: _Optional[float] = ..., longitude: _Optional[float] = ..., photo_count: _Optional[int] = ..., bio_length: _Optional[int] = ..., profile_completeness: _Optional[float] = ..., signup_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., city: _Optional[str] = ..., preferences: _Optional[_Union[Preferences, _Mapping]] = ..., photo_quality_score: _Optional[int] = ...) -> None: ...
