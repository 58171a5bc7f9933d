// SPDX-License-Identifier: GPL-2.0-or-later
//
// pair_style hipot: HIENet models (hipot) in LAMMPS, as a plugin.
//
// Copyright the hipot authors. This file is compiled against the headers of LAMMPS, which is
// GPL-2.0, and is therefore distributed under the GNU General Public License, version 2 or (at
// your option) any later version. The rest of hipot is MIT-licensed; python_bridge.cpp, which
// includes no LAMMPS code, is MIT as well.
//
// The pair style owns the LAMMPS side of a step: the edges of the local atoms from a full
// neighbour list (vectors in double precision), the graph's nodes, the checks every rank must
// agree on, and the communication of node features between message-passing layers (forward_comm;
// reverse_comm of their gradients in the backward pass). The model runs in Python
// (hipot/lammps/driver.py), reached through python_bridge.cpp, which this file loads at run time
// so that one build works both in the `lmp` program and in a Python process driving LAMMPS.
//
// Nodes: a ghost atom that is a periodic image of a local atom is folded onto it (its edges go to
// the local atom, with the image's own vector), found by atom ID; only atoms of other ranks are
// ghost rows, one per atom however many of its images are neighbours. On one rank every ghost
// folds: the graph is the calculator's and nothing is exchanged.
//
// One file of about 520 lines, as a LAMMPS style is: loading the Python half, the pair style
// class, and the registration LAMMPS's plugin loader calls.

#include "atom.h"
#include "comm.h"
#include "error.h"
#include "force.h"
#include "lammps.h"
#include "memory.h"
#include "neigh_list.h"
#include "neighbor.h"
#include "pair.h"
#include "update.h"
#include "utils.h"

#include "bridge.h"

#include <dlfcn.h>
#include <mpi.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <type_traits>
#include <unordered_map>
#include <vector>

#ifndef HIPOT_PYTHON
#error "build with -DHIPOT_PYTHON=\"/path/to/python\" -DHIPOT_LIBPYTHON=\"/path/to/libpython.so or empty\""
#endif

using namespace LAMMPS_NS;

namespace {

// ---------------------------------------------------------------------------- the Python half

struct Bridge {
  const char *(*error)();
  int (*python_start)(const char *);
  void *(*driver_new)(int, const char *const *, int, int, hipot_exchange_fn, void *);
  void (*driver_free)(void *);
  int (*driver_info)(void *, double *, int *, double *);
  int (*driver_set_elements)(void *, int, const char *const *);
  int (*driver_compute)(void *, hipot_step *);
  int (*driver_timing)(void *, int, double *, char *, int);
};

// Load python_bridge.so from this plugin's folder, once per process. Where no Python runs in the
// process yet (the `lmp` program), libpython is loaded first, with its symbols global, so that
// the bridge (which links none) finds them.
const Bridge *load_bridge(std::string &err)
{
  static Bridge bridge;
  static std::string error;
  static bool tried = false;
  if (!tried) {
    tried = true;
    if (!dlsym(RTLD_DEFAULT, "Py_IsInitialized")) {
      const char *lib = HIPOT_LIBPYTHON;
      if (!*lib)
        error = "the Python this plugin was built with (" HIPOT_PYTHON ") has no shared libpython, so the "
                "lmp program cannot run it; drive LAMMPS from that Python instead (from lammps import lammps) "
                "or use a Python built with --enable-shared";
      else if (!dlopen(lib, RTLD_NOW | RTLD_GLOBAL))
        error = std::string("could not load ") + lib + ": " + dlerror();
    }
    if (error.empty()) {
      Dl_info info;
      std::string path = "python_bridge.so";
      if (dladdr(reinterpret_cast<void *>(&load_bridge), &info) && info.dli_fname) {
        std::string self = info.dli_fname;
        path = self.substr(0, self.rfind('/') + 1) + "python_bridge.so";
      }
      void *h = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
      if (!h) {
        error = std::string("could not load ") + path + ": " + dlerror();
      } else {
        bool ok = true;
        auto get = [&](auto &fn, const char *name) {
          fn = reinterpret_cast<std::remove_reference_t<decltype(fn)>>(dlsym(h, name));
          ok = ok && fn;
        };
        get(bridge.error, "hipot_error");
        get(bridge.python_start, "hipot_python_start");
        get(bridge.driver_new, "hipot_driver_new");
        get(bridge.driver_free, "hipot_driver_free");
        get(bridge.driver_info, "hipot_driver_info");
        get(bridge.driver_set_elements, "hipot_driver_set_elements");
        get(bridge.driver_compute, "hipot_driver_compute");
        get(bridge.driver_timing, "hipot_driver_timing");
        if (!ok) error = path + " lacks a hipot_* function: rebuild it (python -m hipot.lammps --rebuild)";
        else if (bridge.python_start(HIPOT_PYTHON) != 0) error = bridge.error();
      }
    }
  }
  err = error;
  return error.empty() ? &bridge : nullptr;
}

}  // namespace

namespace LAMMPS_NS {

class PairHIPot : public Pair {
 public:
  PairHIPot(LAMMPS *lmp);
  ~PairHIPot() override;
  void compute(int, int) override;
  void settings(int, char **) override;
  void coeff(int, char **) override;
  void init_style() override;
  double init_one(int, int) override;
  void finish() override;
  int pack_forward_comm(int, int *, double *, int, int *) override;
  void unpack_forward_comm(int, int, double *) override;
  int pack_reverse_comm(int, int, double *) override;
  void unpack_reverse_comm(int, int *, double *) override;

  // Called by the model between layers: features (or their gradients) of all nlocal + nghost
  // atoms (rows of ghosts that are no node are zero), `width` float64 slots each (bridge.h,
  // hipot_exchange_fn), communicated in place.
  int exchange(double *buf, long long width, int mode);

 private:
  const Bridge *bridge = nullptr;
  void *driver = nullptr;
  double cutoff = 0.0, min_distance = 0.0;
  int max_width = 0;
  double *xbuf = nullptr;
  int xwidth = 0;
  bool xfloat32 = false;  // the rows hold float32 pairs: the reverse communication adds floats
  std::vector<long long> nodes, node_of, edge_center, edge_neighbor;
  std::vector<int> node_type;
  std::vector<std::string> elements;  // of pair_coeff, kept for a repeated pair_style
  std::vector<double> edge_vec;
  // the fold of ghost atoms onto nodes, valid while the atoms keep their indices (until the next
  // neighbour-list build): local index by atom ID, ghost row by atom ID
  std::unordered_map<tagint, long long> local_of_tag, row_of_tag;
  bigint fold_ncalls = -1;
  int fold_nlocal = -1, fold_nghost = -1;

  void check_units();
  void refresh_fold();
  long long fold(int j);
  void set_elements(const std::vector<std::string> &names);
  void all_agree(bool ok, const std::string &msg);
  void check_geometry(double min_rsq, int i, int j);
};

}  // namespace LAMMPS_NS

static int exchange_callback(void *ctx, double *buf, long long width, int mode)
{
  return static_cast<PairHIPot *>(ctx)->exchange(buf, width, mode);
}

PairHIPot::PairHIPot(LAMMPS *lmp) : Pair(lmp)
{
  single_enable = 0;
  restartinfo = 0;
  one_coeff = 1;
  manybody_flag = 1;
  no_virial_fdotr_compute = 1;  // the virial comes from the edges, exactly
  centroidstressflag = CENTROID_NOTAVAIL;
  comm_forward = comm_reverse = 0;
}

PairHIPot::~PairHIPot()
{
  if (bridge && driver) bridge->driver_free(driver);
  if (allocated) {
    memory->destroy(setflag);
    memory->destroy(cutsq);
  }
}

// An error on every rank with the message of the lowest failing rank, for checks whose outcome
// could differ between ranks: no rank is left waiting for the others.
void PairHIPot::all_agree(bool ok, const std::string &msg)
{
  int mine = ok ? comm->nprocs : comm->me, first = 0;
  MPI_Allreduce(&mine, &first, 1, MPI_INT, MPI_MIN, world);
  if (first == comm->nprocs) return;
  int len = comm->me == first ? static_cast<int>(msg.size()) : 0;
  MPI_Bcast(&len, 1, MPI_INT, first, world);
  std::string text = comm->me == first ? msg : std::string(len, ' ');
  MPI_Bcast(text.data(), len, MPI_CHAR, first, world);
  error->all(FLERR, "pair hipot: " + text);
}

void PairHIPot::check_units()
{
  if (std::strcmp(update->unit_style, "metal") != 0)
    error->all(FLERR, std::string("pair style hipot requires 'units metal' (eV, Angstrom, ps), not 'units ") +
                          update->unit_style + "'");
}

// pair_style hipot MODEL [keyword value ...]: the keywords are read by hipot/lammps/driver.py.
void PairHIPot::settings(int narg, char **arg)
{
  check_units();
  if (narg < 1)
    error->all(FLERR, "Illegal pair_style hipot command: use pair_style hipot MODEL [device D] [dtype T] "
                      "[backend B] [timing yes|no] [exchange yes|no]");
  std::string err;
  bridge = load_bridge(err);
  all_agree(bridge != nullptr, err);
  if (driver) {
    bridge->driver_free(driver);
    driver = nullptr;
  }
  // rank 0 first: the first use of a named model fetches it into the cache, once
  if (comm->me == 0) driver = bridge->driver_new(narg, arg, comm->me, comm->nprocs, exchange_callback, this);
  all_agree(comm->me != 0 || driver, driver ? "" : bridge->error());
  if (comm->me != 0) driver = bridge->driver_new(narg, arg, comm->me, comm->nprocs, exchange_callback, this);
  all_agree(driver != nullptr, driver ? "" : bridge->error());
  int rc = bridge->driver_info(driver, &cutoff, &max_width, &min_distance);
  all_agree(rc == 0, rc ? bridge->error() : "");
  comm_forward = comm_reverse = max_width;
  // pair_style hipot given again: LAMMPS keeps this object and its coefficients
  if (!elements.empty()) set_elements(elements);
}

void PairHIPot::set_elements(const std::vector<std::string> &names)
{
  std::vector<const char *> args;
  for (const auto &e : names) args.push_back(e.c_str());
  int rc = bridge->driver_set_elements(driver, static_cast<int>(args.size()), args.data());
  all_agree(rc == 0, rc ? bridge->error() : "");
  elements = names;
}

// pair_coeff * * El1 El2 ...: the element of each atom type.
void PairHIPot::coeff(int narg, char **arg)
{
  if (!driver) error->all(FLERR, "pair_coeff before pair_style hipot");
  const int ntypes = atom->ntypes;
  if (narg < 2 || std::strcmp(arg[0], "*") != 0 || std::strcmp(arg[1], "*") != 0)
    error->all(FLERR, "pair hipot: use pair_coeff * * El1 El2 ... (one element symbol per atom type)");
  if (narg - 2 != ntypes)
    error->all(FLERR, "pair hipot: pair_coeff * * needs one element per atom type: the box has {} atom "
                      "type(s), {} element(s) given",
               ntypes, narg - 2);
  set_elements(std::vector<std::string>(arg + 2, arg + narg));
  if (!allocated) {
    allocated = 1;
    memory->create(setflag, ntypes + 1, ntypes + 1, "pair:setflag");
    memory->create(cutsq, ntypes + 1, ntypes + 1, "pair:cutsq");
  }
  for (int i = 1; i <= ntypes; ++i)
    for (int j = 1; j <= ntypes; ++j) setflag[i][j] = 1;
}

void PairHIPot::init_style()
{
  check_units();
  if (force->newton_pair == 0)
    error->all(FLERR, "pair style hipot requires 'newton on' (forces on ghost atoms are sent to their owners)");
  if (atom->tag_enable == 0) error->all(FLERR, "pair style hipot requires atom IDs");
  neighbor->add_request(this, NeighConst::REQ_FULL);
}

double PairHIPot::init_one(int, int)
{
  return cutoff;
}

// Every rank calls this every step (it holds a collective): stops all ranks when two atoms are
// closer than min_distance or a position is not finite, naming the atoms.
void PairHIPot::check_geometry(double min_rsq, int i, int j)
{
  struct {
    double value;
    int rank;
  } mine{std::isnan(min_rsq) ? -1.0 : min_rsq, comm->me}, worst{0.0, 0};
  MPI_Allreduce(&mine, &worst, 1, MPI_DOUBLE_INT, MPI_MINLOC, world);
  if (worst.value >= min_distance * min_distance) return;
  std::string msg;
  if (comm->me == worst.rank) {
    if (mine.value < 0)
      msg = fmt::format("atom {} has a non-finite position", atom->tag[i]);
    else
      msg = fmt::format("atoms {} and {} are {:.4g} Angstrom apart, closer than min_distance {} "
                        "(overlapping atoms)",
                        atom->tag[i], atom->tag[j], std::sqrt(min_rsq), min_distance);
  }
  all_agree(comm->me != worst.rank, msg);
}

// Atoms keep their indices between neighbour-list builds (LAMMPS exchanges and sorts atoms only
// then): the fold is reset at each build and filled as ghosts turn up as neighbours.
void PairHIPot::refresh_fold()
{
  const int nlocal = atom->nlocal, nghost = atom->nghost;
  if (neighbor->ncalls == fold_ncalls && nlocal == fold_nlocal && nghost == fold_nghost) return;
  fold_ncalls = neighbor->ncalls;
  fold_nlocal = nlocal;
  fold_nghost = nghost;
  nodes.resize(nlocal);
  node_of.assign(nlocal + nghost, -1);
  local_of_tag.clear();
  local_of_tag.reserve(nlocal);
  row_of_tag.clear();
  for (int i = 0; i < nlocal; ++i) {
    nodes[i] = node_of[i] = i;
    local_of_tag[atom->tag[i]] = i;
  }
}

// The node of ghost atom j: the local atom it is an image of, else the ghost row of its atom
// (a new row for the first of its images met).
long long PairHIPot::fold(int j)
{
  const tagint id = atom->tag[j];
  auto local = local_of_tag.find(id);
  long long node;
  if (local != local_of_tag.end()) {
    node = local->second;
  } else {
    auto row = row_of_tag.find(id);
    if (row != row_of_tag.end()) {
      node = row->second;
    } else {
      node = static_cast<long long>(nodes.size());
      nodes.push_back(j);
      row_of_tag.emplace(id, node);
    }
  }
  node_of[j] = node;
  return node;
}

void PairHIPot::compute(int eflag, int vflag)
{
  ev_init(eflag, vflag);
  const double started = MPI_Wtime();
  const int nlocal = atom->nlocal, nghost = atom->nghost;
  double **x = atom->x;
  const double cutsq_model = cutoff * cutoff;

  // Edges of the local atoms within the cutoff (the list reaches cutoff + skin), vectors in
  // double precision from LAMMPS's positions (an image's own position): exact however far the
  // box is from the origin. Nodes: the local atoms, then the ghost rows (see the top of this file).
  refresh_fold();
  edge_center.clear();
  edge_neighbor.clear();
  edge_vec.clear();
  double min_rsq = std::numeric_limits<double>::infinity();
  int close_i = 0, close_j = 0;
  for (int ii = 0; ii < list->inum; ++ii) {
    const int i = list->ilist[ii];
    const int *jlist = list->firstneigh[i];
    if (!std::isfinite(x[i][0] + x[i][1] + x[i][2])) {
      min_rsq = std::numeric_limits<double>::quiet_NaN();
      close_i = i;
      break;
    }
    for (int jj = 0; jj < list->numneigh[i]; ++jj) {
      const int j = jlist[jj] & NEIGHMASK;
      const double dx = x[j][0] - x[i][0], dy = x[j][1] - x[i][1], dz = x[j][2] - x[i][2];
      const double rsq = dx * dx + dy * dy + dz * dz;
      if (rsq < min_rsq) {
        min_rsq = rsq;
        close_i = i;
        close_j = j;
      }
      if (rsq < cutsq_model) {
        const long long node = node_of[j] >= 0 ? node_of[j] : fold(j);
        edge_center.push_back(i);
        edge_neighbor.push_back(node);
        edge_vec.insert(edge_vec.end(), {dx, dy, dz});
      }
    }
  }
  check_geometry(min_rsq, close_i, close_j);
  node_type.resize(nodes.size());
  for (size_t k = 0; k < nodes.size(); ++k) node_type[k] = atom->type[nodes[k]];

  hipot_step step{};
  step.nlocal = nlocal;
  step.nghost = nghost;
  step.nnodes = static_cast<long long>(nodes.size());
  step.nodes = nodes.data();
  step.type = node_type.data();
  step.nedges = static_cast<long long>(edge_center.size());
  step.center = edge_center.data();
  step.neighbor = edge_neighbor.data();
  step.vec = edge_vec.data();
  step.f = nlocal + nghost ? atom->f[0] : nullptr;
  step.eatom = eflag_atom ? eatom : nullptr;
  step.vatom = vflag_atom && nlocal + nghost ? vatom[0] : nullptr;
  step.seconds_edges = MPI_Wtime() - started;
  // An error here may be one rank's alone while the others wait in a collective of the model:
  // error->one stops them all.
  if (bridge->driver_compute(driver, &step) != 0) error->one(FLERR, std::string("pair hipot: ") + bridge->error());
  if (eflag_global) eng_vdwl += step.energy;
  if (vflag_global)
    for (int k = 0; k < 6; ++k) virial[k] += step.virial[k];
}

int PairHIPot::exchange(double *buf, long long width, int mode)
{
  if (width < 0 || width > comm_forward) return 1;
  xbuf = buf;
  xwidth = static_cast<int>(width);
  xfloat32 = (mode & HIPOT_EXCHANGE_FLOAT32) != 0;
  try {
    if (mode & HIPOT_EXCHANGE_REVERSE)
      comm->reverse_comm(this, xwidth);
    else
      comm->forward_comm(this, xwidth);
  } catch (...) {
    return 1;
  }
  return 0;
}

int PairHIPot::pack_forward_comm(int n, int *list, double *buf, int, int *)
{
  for (int i = 0; i < n; ++i) std::memcpy(buf + i * xwidth, xbuf + (long long) list[i] * xwidth, xwidth * sizeof(double));
  return n * xwidth;
}

void PairHIPot::unpack_forward_comm(int n, int first, double *buf)
{
  std::memcpy(xbuf + (long long) first * xwidth, buf, (size_t) n * xwidth * sizeof(double));
}

// The rows leave zeros behind: every ghost row is packed once per reverse communication (after
// any it passed rows on to), so the array is zero again but for the local rows, which the driver
// reads and clears (it keeps the array zero between exchanges instead of clearing all of it).
int PairHIPot::pack_reverse_comm(int n, int first, double *buf)
{
  double *rows = xbuf + (long long) first * xwidth;
  std::memcpy(buf, rows, (size_t) n * xwidth * sizeof(double));
  std::memset(rows, 0, (size_t) n * xwidth * sizeof(double));
  return n * xwidth;
}

void PairHIPot::unpack_reverse_comm(int n, int *list, double *buf)
{
  if (xfloat32) {
    const int w = 2 * xwidth;
    for (int i = 0; i < n; ++i) {
      float *row = reinterpret_cast<float *>(xbuf + (long long) list[i] * xwidth);
      const float *src = reinterpret_cast<const float *>(buf + (long long) i * xwidth);
      for (int k = 0; k < w; ++k) row[k] += src[k];
    }
    return;
  }
  for (int i = 0; i < n; ++i) {
    double *row = xbuf + (long long) list[i] * xwidth;
    const double *src = buf + i * xwidth;
    for (int k = 0; k < xwidth; ++k) row[k] += src[k];
  }
}

// With the `timing yes` keyword: where the pair style's time went in the run just finished,
// averaged over the ranks (and the slowest rank).
void PairHIPot::finish()
{
  if (!driver) return;
  double values[16] = {0};
  char names[512] = {0};
  int n = bridge->driver_timing(driver, 16, values, names, sizeof(names));
  int nmax = 0;
  MPI_Allreduce(&n, &nmax, 1, MPI_INT, MPI_MAX, world);
  if (nmax <= 0) return;
  double sum[16], worst[16];
  MPI_Allreduce(values, sum, nmax, MPI_DOUBLE, MPI_SUM, world);
  MPI_Allreduce(values, worst, nmax, MPI_DOUBLE, MPI_MAX, world);
  if (comm->me != 0) return;
  std::vector<std::string> labels = utils::split_words(names);  // one word per part
  std::string out = "pair hipot timing (seconds; graph_nodes, exchanged_rows: per step; mean over ranks / "
                    "largest):\n";
  for (int k = 0; k < nmax; ++k)
    out += fmt::format("  {:<28s} {:10.4f} {:10.4f}\n", k < (int) labels.size() ? labels[k] : "?",
                       sum[k] / comm->nprocs, worst[k]);
  utils::logmesg(lmp, out);
}

// ---------------------------------------------------------------------------- plugin registration

extern "C" {
struct hipot_lammpsplugin_t {  // the layout of lammpsplugin_t (LAMMPS src/PLUGIN/lammpsplugin.h)
  const char *version;
  const char *style;
  const char *name;
  const char *info;
  const char *author;
  union {
    void *(*v1)(void *);
    void *(*v2)(void *, int, char **);
  } creator;
  void *handle;
};

static void *hipot_creator(void *lmp)
{
  return new PairHIPot(static_cast<LAMMPS *>(lmp));
}

__attribute__((visibility("default"))) void lammpsplugin_init(void *lmp, void *handle, void *regfunc)
{
  hipot_lammpsplugin_t plugin{};
  plugin.version = static_cast<LAMMPS *>(lmp)->version;  // compiled against this LAMMPS's headers
  plugin.style = "pair";
  plugin.name = "hipot";
  plugin.info = "HIENet machine-learning potentials (hipot) pair style, GPL-2.0-or-later";
  plugin.author = "the hipot authors";
  plugin.creator.v1 = &hipot_creator;
  plugin.handle = handle;
  reinterpret_cast<void (*)(hipot_lammpsplugin_t *, void *)>(regfunc)(&plugin, lmp);
}
}
