#ifndef INTEGRATION_BINDINGS_PYTHON_RUN_HPP
#define INTEGRATION_BINDINGS_PYTHON_RUN_HPP

// `integration.Run`: a run as a read-only mapping that owns the C++ run and builds each value
// only when it is read. `execute` is the module's hot call, and most of what building a whole
// dict cost there was cache misses (the first Python memory touched after a run is cold), so a
// run hands over what the caller reads and nothing more. The keys, values and their types are
// those of the dict the module returned before (`dict(run)` is that dict). An executed run's
// `response` is an `integration.Response`, the same kind of mapping over the run's response.

#include <integration/domain/run.hpp>
#include <integration/services/run_service.hpp>

#include <pybind11/pybind11.h>

namespace integration::python {

namespace py = pybind11;

/** Creates `integration.Run` and `integration.Response` in `m`, registered as
 *  `collections.abc.Mapping`s; called once from the module's init. */
void add_run_class(py::module_& m);

/** A stored run as an `integration.Run` (`get_run`, `list_runs`). */
py::object run_to_python(runs::integration_run run);
/** An executed run as an `integration.Run`, with the vendor's `response`, `failure_id` and
 *  `replayed` (`execute`). */
py::object run_to_python(runs::run_outcome outcome);

}  // namespace integration::python

#endif
