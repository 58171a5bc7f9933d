// SPDX-License-Identifier: MIT
//
// hipot's LAMMPS plugin, Python half: a small C interface over CPython that the pair style
// (pair_hipot.cpp) loads at run time. It includes no LAMMPS header; it is compiled against the
// headers of the Python that built it and links no libpython: the Py* symbols come from the
// process, which is either a Python interpreter driving LAMMPS (`lammps.lammps()`) or the `lmp`
// program, into which pair_hipot.cpp loads libpython (RTLD_GLOBAL) before this file.
//
// Every function takes the GIL for its duration, so it works from `lmp` (where this file starts
// the interpreter and then releases the GIL) and from a Python caller (which released it while
// calling into LAMMPS through ctypes). All data cross as memoryviews of the pair style's arrays:
// no copy on this side. Errors are returned as 1 with the message in hipot_error().

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <cstring>
#include <string>

#include "bridge.h"

#define HIPOT_API extern "C" __attribute__((visibility("default")))

namespace {

std::string last_error;
bool started_here = false;  // this file started the interpreter: the `lmp` program, not a Python caller
std::string interpreter = "the running Python";

struct ExchangeTarget {
  hipot_exchange_fn fn;
  void *ctx;
};

class Gil {
 public:
  Gil() : state_(PyGILState_Ensure()) {}
  ~Gil() { PyGILState_Release(state_); }

 private:
  PyGILState_STATE state_;
};

// The pending Python exception as one line; the driver has already printed a traceback for
// errors that are not the user's (see hipot/lammps/driver.py, `guarded`).
int fail_from_python(const char *what)
{
  PyObject *type = nullptr, *value = nullptr, *tb = nullptr;
  PyErr_Fetch(&type, &value, &tb);
  PyErr_NormalizeException(&type, &value, &tb);
  std::string msg = what;
  if (value) {
    PyObject *s = PyObject_Str(value);
    const char *text = s ? PyUnicode_AsUTF8(s) : nullptr;
    if (text && *text) msg = text;
    else if (type) msg += std::string(": ") + reinterpret_cast<PyTypeObject *>(type)->tp_name;
    Py_XDECREF(s);
  }
  PyErr_Clear();
  Py_XDECREF(type);
  Py_XDECREF(value);
  Py_XDECREF(tb);
  last_error = msg;
  return 1;
}

PyObject *py_exchange(PyObject *self, PyObject *args)
{
  unsigned long long ptr = 0;
  long long width = 0;
  int reverse = 0, float32 = 0;
  if (!PyArg_ParseTuple(args, "KLpp", &ptr, &width, &reverse, &float32)) return nullptr;
  const int mode = (reverse ? HIPOT_EXCHANGE_REVERSE : 0) | (float32 ? HIPOT_EXCHANGE_FLOAT32 : 0);
  auto *target = static_cast<ExchangeTarget *>(PyCapsule_GetPointer(self, "hipot.exchange"));
  if (!target) return nullptr;
  int rc = 0;
  Py_BEGIN_ALLOW_THREADS
  rc = target->fn(target->ctx, reinterpret_cast<double *>(ptr), width, mode);
  Py_END_ALLOW_THREADS
  if (rc != 0) {
    PyErr_SetString(PyExc_RuntimeError, "LAMMPS communication of hipot node features failed");
    return nullptr;
  }
  Py_RETURN_NONE;
}

PyMethodDef exchange_def = {"exchange", py_exchange, METH_VARARGS,
                            "exchange(pointer, width, reverse, float32): LAMMPS forward or reverse communication, in place"};

void free_target(PyObject *capsule)
{
  delete static_cast<ExchangeTarget *>(PyCapsule_GetPointer(capsule, "hipot.exchange"));
}

PyObject *view(const void *ptr, Py_ssize_t bytes)
{
  static char empty[8];
  char *p = ptr ? static_cast<char *>(const_cast<void *>(ptr)) : empty;
  return PyMemoryView_FromMemory(p, ptr ? bytes : 0, PyBUF_WRITE);
}

}  // namespace

HIPOT_API const char *hipot_error() { return last_error.c_str(); }

// Start the interpreter if this process has none (the `lmp` program). `python` is the
// interpreter the plugin was built for: its path makes Python find that environment's packages.
HIPOT_API int hipot_python_start(const char *python)
{
  if (Py_IsInitialized()) return 0;
  PyConfig config;
  PyConfig_InitPythonConfig(&config);
  config.install_signal_handlers = 0;  // LAMMPS and MPI keep their signal handling
  config.parse_argv = 0;
  PyStatus status = PyConfig_SetBytesString(&config, &config.program_name, python);
  if (!PyStatus_Exception(status)) status = Py_InitializeFromConfig(&config);
  PyConfig_Clear(&config);
  if (PyStatus_Exception(status)) {
    last_error = std::string("could not start the Python interpreter ") + python + ": " +
        (status.err_msg ? status.err_msg : "unknown error");
    return 1;
  }
  started_here = true;
  interpreter = python;
  PyEval_SaveThread();  // release the GIL: every call below takes it
  return 0;
}

// A hipot.lammps.driver.Driver for `pair_style hipot ARGS...`; null on error.
HIPOT_API void *hipot_driver_new(int argc, const char *const *argv, int rank, int nprocs, hipot_exchange_fn fn,
                                 void *ctx)
{
  Gil gil;
  PyObject *module = PyImport_ImportModule("hipot.lammps.driver");
  if (!module) {
    fail_from_python("could not import hipot.lammps.driver");
    last_error = "could not import hipot.lammps.driver in " + interpreter + " (" + last_error +
                 "): hipot must be installed in the Python environment the plugin was built with";
    return nullptr;
  }
  PyObject *cls = PyObject_GetAttrString(module, "Driver");
  Py_DECREF(module);
  if (!cls) {
    fail_from_python("hipot.lammps.driver has no Driver");
    return nullptr;
  }
  PyObject *args = PyList_New(argc);
  for (int i = 0; i < argc; ++i) PyList_SET_ITEM(args, i, PyUnicode_FromString(argv[i]));
  PyObject *capsule = PyCapsule_New(new ExchangeTarget{fn, ctx}, "hipot.exchange", free_target);
  PyObject *exchange = PyCFunction_New(&exchange_def, capsule);
  Py_DECREF(capsule);
  PyObject *driver = PyObject_CallFunction(cls, "OOiiO", args, exchange, rank, nprocs,
                                           started_here ? Py_True : Py_False);
  Py_DECREF(cls);
  Py_DECREF(args);
  Py_DECREF(exchange);
  if (!driver) {
    fail_from_python("pair_style hipot failed");
    return nullptr;
  }
  return driver;
}

HIPOT_API void hipot_driver_free(void *driver)
{
  if (!driver || !Py_IsInitialized()) return;
  Gil gil;
  Py_DECREF(static_cast<PyObject *>(driver));
}

// Cutoff (A), widest exchanged feature row (float64 numbers per atom), closest allowed distance (A).
HIPOT_API int hipot_driver_info(void *driver, double *cutoff, int *width, double *min_distance)
{
  Gil gil;
  PyObject *info = PyObject_CallMethod(static_cast<PyObject *>(driver), "info", nullptr);
  if (!info) return fail_from_python("Driver.info failed");
  int ok = PyArg_ParseTuple(info, "did", cutoff, width, min_distance);
  Py_DECREF(info);
  return ok ? 0 : fail_from_python("Driver.info returned a wrong value");
}

HIPOT_API int hipot_driver_set_elements(void *driver, int n, const char *const *elements)
{
  Gil gil;
  PyObject *list = PyList_New(n);
  for (int i = 0; i < n; ++i) PyList_SET_ITEM(list, i, PyUnicode_FromString(elements[i]));
  PyObject *res = PyObject_CallMethod(static_cast<PyObject *>(driver), "set_elements", "O", list);
  Py_DECREF(list);
  if (!res) return fail_from_python("pair_coeff failed");
  Py_DECREF(res);
  return 0;
}

HIPOT_API int hipot_driver_compute(void *driver, hipot_step *s)
{
  Gil gil;
  const Py_ssize_t nall = static_cast<Py_ssize_t>(s->nlocal) + s->nghost;
  const Py_ssize_t d = sizeof(double);
  // all writable, so that numpy makes writable arrays of them (torch warns on read-only ones);
  // Python writes only into f, eatom and vatom
  PyObject *nodes = view(s->nodes, s->nnodes * sizeof(long long));
  PyObject *type = view(s->type, s->nnodes * sizeof(int));
  PyObject *center = view(s->center, s->nedges * sizeof(long long));
  PyObject *neighbor = view(s->neighbor, s->nedges * sizeof(long long));
  PyObject *vec = view(s->vec, s->nedges * 3 * d);
  PyObject *f = view(s->f, nall * 3 * d);
  PyObject *eatom = s->eatom ? view(s->eatom, s->nlocal * d) : Py_NewRef(Py_None);
  PyObject *vatom = s->vatom ? view(s->vatom, nall * 6 * d) : Py_NewRef(Py_None);
  PyObject *res = PyObject_CallMethod(static_cast<PyObject *>(driver), "compute", "iiOOOOOOOOd", s->nlocal,
                                      s->nghost, nodes, type, center, neighbor, vec, f, eatom, vatom,
                                      s->seconds_edges);
  for (PyObject *o : {nodes, type, center, neighbor, vec, f, eatom, vatom}) Py_DECREF(o);
  if (!res) return fail_from_python("hipot compute failed");
  int ok = PyArg_ParseTuple(res, "d(dddddd)", &s->energy, s->virial, s->virial + 1, s->virial + 2,
                            s->virial + 3, s->virial + 4, s->virial + 5);
  Py_DECREF(res);
  return ok ? 0 : fail_from_python("Driver.compute returned a wrong value");
}

// Seconds spent in each part of the steps so far, `names` comma-separated; returns how many
// values were written (at most n), or -1 on error.
HIPOT_API int hipot_driver_timing(void *driver, int n, double *values, char *names, int names_len)
{
  Gil gil;
  PyObject *res = PyObject_CallMethod(static_cast<PyObject *>(driver), "timing", nullptr);
  if (!res) {
    fail_from_python("Driver.timing failed");
    return -1;
  }
  const char *text = nullptr;
  PyObject *seq = nullptr;
  if (!PyArg_ParseTuple(res, "sO", &text, &seq) || !PySequence_Check(seq)) {
    Py_DECREF(res);
    fail_from_python("Driver.timing returned a wrong value");
    return -1;
  }
  std::strncpy(names, text, names_len - 1);
  names[names_len - 1] = '\0';
  Py_ssize_t m = PySequence_Size(seq);
  int k = 0;
  for (; k < n && k < m; ++k) {
    PyObject *item = PySequence_GetItem(seq, k);
    values[k] = PyFloat_AsDouble(item);
    Py_XDECREF(item);
  }
  Py_DECREF(res);
  return k;
}
