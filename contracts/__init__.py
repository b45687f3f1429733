"""Data contracts: the single declaration of every source's fields, from which decoders,
Arrow schemas, Great Expectations suites and the column docs are derived."""

from contracts.registry import CONTRACTS, contract_for_source, contract_for_topic
from contracts.schema import Contract, Field, Reason

__all__ = ["CONTRACTS", "Contract", "Field", "Reason", "contract_for_source", "contract_for_topic"]
