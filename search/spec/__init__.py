"""Reading a spec: YAML with positions (``yamlio``), each section's keys and defaults
(``schema``), the checks of their values and names (``checks``), the walk that collects
located issues (``checker``), the model and train sections as spaces (``model_space``),
search dimensions (``space``), a sampled model section as an architecture (``arch``), the
data and store checks (``inputs``), an ablation's design (``ablation``), and ``load``,
which turns a file into a frozen ``Spec`` or a ``SpecError`` listing every problem."""

from search.spec.load import Spec, SpecError, build_spec, load
from search.spec.schema import BackendSpec, SearchSpec

__all__ = ["BackendSpec", "SearchSpec", "Spec", "SpecError", "build_spec", "load"]
