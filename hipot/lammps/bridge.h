// SPDX-License-Identifier: MIT
//
// The C interface between the pair style (pair_hipot.cpp) and its Python half
// (python_bridge.cpp): what one step hands to hipot/lammps/driver.py and gets back.
#pragma once

extern "C" {

// The graph's nodes are the local atoms (LAMMPS indices 0..nlocal-1, in order) and then the ghost
// rows: one per atom of another rank that is a neighbour of a local atom (a LAMMPS ghost index of
// it). A ghost that is a periodic image of a local atom is no node: its edges go to that atom.
struct hipot_step {
  int nlocal, nghost;                  // LAMMPS's counts
  long long nnodes;
  const long long *nodes;              // (nnodes) LAMMPS index of each node
  const int *type;                     // (nnodes) LAMMPS atom type of each node
  long long nedges;
  const long long *center, *neighbor;  // (nedges) node indices; centres are local atoms
  const double *vec;                   // (nedges, 3) x[j] - x[i] of the LAMMPS atoms (j an image, maybe)
  double *f;                           // (nlocal + nghost, 3): forces are added here
  double *eatom;                       // (nlocal) or null: per-atom energies are added here
  double *vatom;                       // (nlocal + nghost, 6) or null: per-atom virials are added here
  double seconds_edges;                // time LAMMPS took to list the edges (timing report)
  double energy;                       // out: energy of the local atoms
  double virial[6];                    // out: this rank's virial, xx yy zz xy xz yz
};

// LAMMPS forward or reverse communication, in place, of a (nlocal + nghost, width) array of node
// features or of their gradients, `width` float64 slots per row; 0 on success. `mode` bit 0:
// reverse (ghost rows added to their owners, and left zero); bit 1: the slots hold pairs of
// float32, which the reverse communication adds as float32.
typedef int (*hipot_exchange_fn)(void *ctx, double *buf, long long width, int mode);
enum { HIPOT_EXCHANGE_REVERSE = 1, HIPOT_EXCHANGE_FLOAT32 = 2 };

}
