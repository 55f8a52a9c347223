"""Names and values quoted for PostgreSQL's SQL, so a role can build statements from inventory data.

Roles send SQL to ``psql`` on its stdin (commands.with_stdin): the quoting here is about SQL's
grammar only, the shell never sees the text. A quoted name or value is one token whatever it
holds: quotes, backslashes, ``$$``, newlines, psql's ``:variables`` (psql substitutes none inside
quotes) and any Unicode. What SQL text cannot carry at all is refused rather than changed.
"""

from __future__ import annotations

from provisioner.secrets.values import Secret

#: Bytes a name may have: PostgreSQL truncates longer ones (NAMEDATALEN 64, less its NUL), and
#: a truncated role or database name is another object than the one the inventory named.
MAX_IDENTIFIER_BYTES = 63


def quote_identifier(name: str) -> str:
    """``name`` as a quoted identifier: in double quotes, each embedded one doubled.

    Quoted, a name is taken exactly as written: ``App`` stays ``App`` (unquoted it would fold to
    ``app``) and no keyword is special. Empty, NUL-holding and over-long names are refused.
    """
    if not name:
        raise ValueError("an SQL identifier cannot be empty")
    if "\0" in name:
        raise ValueError(f"an SQL identifier cannot hold a NUL character: {name!r}")
    if len(name.encode("utf-8")) > MAX_IDENTIFIER_BYTES:
        raise ValueError(f"the SQL identifier {name!r} is longer than {MAX_IDENTIFIER_BYTES} "
                         "bytes: PostgreSQL would cut it short and name something else")
    return '"' + name.replace('"', '""') + '"'


def quote_literal(value: str) -> str:
    """``value`` as a string constant: in single quotes, each embedded one doubled.

    Backslashes stay as they are, which is right while ``standard_conforming_strings`` is on
    (PostgreSQL's default since 9.1); a payload for a server configured otherwise can start
    with ``SET standard_conforming_strings = on;``. The value is not repeated in the error, in
    case it is confidential.
    """
    if "\0" in value:
        raise ValueError("an SQL string constant cannot hold a NUL character")
    return "'" + value.replace("'", "''") + "'"


def quote_secret_literal(secret: Secret) -> Secret:
    """A Secret's value as a string constant, itself a Secret: it stays masked where shown and
    is revealed only into a payload (commands.with_stdin). Give it to the step's ``secrets``
    too: output that echoes the statement shows the doubled quotes, not the value."""
    if "\0" in secret.reveal():
        raise ValueError(f"the secret {secret!r} holds a NUL character, which an SQL string "
                         "constant cannot")
    return Secret(quote_literal(secret.reveal()), secret.reference)
