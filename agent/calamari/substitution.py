"""Substituting variables into files (Calamari's "Substitute Variables in Templates").

The file is read in its own encoding (agent/calamari/textfiles.py), evaluated
as a template leniently, and written back in the same encoding, or in the one
``Octopus.Action.SubstituteInFiles.OutputEncoding`` names; the text's line
endings are never changed.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from agent.calamari import textfiles
from agent.calamari.templates import evaluate_with_errors

OUTPUT_ENCODING = "Octopus.Action.SubstituteInFiles.OutputEncoding"


def substitute_file(
    path: Path,
    variables: Mapping[str, str | None],
    warn: textfiles.Warn,
    output_encoding: str | None = None,
) -> str | None:
    """Evaluate ``path`` as a template in place (leniently); returns the error text, if any.

    ``output_encoding``: a .NET encoding name; unknown names keep the file's
    own encoding (with a warning, where Calamari is silent).
    """
    source = textfiles.read(path)
    encoding = source.encoding
    if output_encoding:
        requested = textfiles.named(output_encoding)
        if requested is None:
            warn(
                f"{OUTPUT_ENCODING}: {output_encoding!r} is not an encoding; "
                f"the file keeps its own ({encoding.name})"
            )
        else:
            encoding = requested
    result = evaluate_with_errors(source.text, variables, lenient=True)
    textfiles.write(path, result.text or "", encoding, warn)
    return result.error
