"""Roles a user can hold. Pure: imported by the state machine."""

from enum import StrEnum


class Role(StrEnum):
    CUSTOMER = "CUSTOMER"
    FARMER = "FARMER"
    ADMIN = "ADMIN"
