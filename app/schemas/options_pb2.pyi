from google.protobuf import descriptor_pb2 as _descriptor_pb2
from google.protobuf import descriptor as _descriptor
from typing import ClassVar as _ClassVar

DESCRIPTOR: _descriptor.FileDescriptor
ENTITY_FIELD_NUMBER: _ClassVar[int]
entity: _descriptor.FieldDescriptor
KEY_FIELD_FIELD_NUMBER: _ClassVar[int]
key_field: _descriptor.FieldDescriptor
UNIT_FIELD_NUMBER: _ClassVar[int]
unit: _descriptor.FieldDescriptor
MIN_FIELD_NUMBER: _ClassVar[int]
min: _descriptor.FieldDescriptor
MAX_FIELD_NUMBER: _ClassVar[int]
max: _descriptor.FieldDescriptor
REQUIRED_FIELD_NUMBER: _ClassVar[int]
required: _descriptor.FieldDescriptor
OFFLINE_ONLY_FIELD_NUMBER: _ClassVar[int]
offline_only: _descriptor.FieldDescriptor
