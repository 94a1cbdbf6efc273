# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False
"""Ended requests' fields, compiled: the request sink's row buffer written into typed arrays.

``sim.metrics.sink`` buffers each ended request's fields until a row group is full, then reads them
as arrays: the summary's columns and the Parquet row group. In Python that is one list per field,
fifteen appends per request and, per row group, a conversion of each list into an array: at a
city's rate (~275,000 requests per simulated second) about a tenth of a run's time. Here ``add``
reads a request's attributes once and writes their values straight into the arrays the row group is
read from (C doubles and 64-bit integers; numpy owns the memory), so a row group's arrays are views,
with no conversion. Values are converted exactly as ``numpy.fromiter`` converts the lists (a float
to a double, an int to an int64), so the two buffers give the same arrays, bit for bit
(tests/test_rows.py); ``sim.metrics.sink._Rows`` is the Python one, used where this module was not
built.
"""

from cpython cimport array

import numpy as np

from sim.model.request import FIELDS, ENQUEUED, START, END, INSTANCE, BATCH, BATCH_SIZE, LINK

SCALARS = ("id", "source", "klass", "priority", "outcome", "reply_link", "arrival", "deadline", "size", "done")
PER_STAGE = ("enqueued", "start", "end", "instance", "batch", "batch_size", "link")
_INTS = 6  # SCALARS[:6] are integers, the rest doubles; PER_STAGE[:3] are doubles, the rest integers
_TIMES = 3


cdef class CompiledRows:
    """Rows of ended requests (or ``sim.metrics.sink._Row`` copies), read back as arrays."""

    cdef readonly Py_ssize_t width, count, capacity
    cdef long long[:, ::1] _ints  # (6, capacity): id source klass priority outcome reply_link
    cdef double[:, ::1] _reals  # (4, capacity): arrival deadline size done
    cdef double[:, :, ::1] _times  # (3, capacity, width): enqueued start end
    cdef long long[:, :, ::1] _codes  # (4, capacity, width): instance batch batch_size link
    cdef object ints, reals, times, codes  # the arrays the views above write into
    cdef long long _unrecorded[3]  # rows without batch, batch_size, link (-1 stored)

    def __init__(self, Py_ssize_t width, Py_ssize_t capacity=1024):
        self.width = width
        self.count = 0
        self._unrecorded[:] = [0, 0, 0]
        self._allocate(max(capacity, 1))

    cdef _allocate(self, Py_ssize_t capacity):
        ints, reals = np.empty((_INTS, capacity), np.int64), np.empty((len(SCALARS) - _INTS, capacity))
        times = np.empty((_TIMES, capacity, self.width))
        codes = np.empty((len(PER_STAGE) - _TIMES, capacity, self.width), np.int64)
        if self.count:  # grown: keep what is written
            ints[:, :self.count], reals[:, :self.count] = self.ints[:, :self.count], self.reals[:, :self.count]
            times[:, :self.count], codes[:, :self.count] = self.times[:, :self.count], self.codes[:, :self.count]
        self.ints, self.reals, self.times, self.codes = ints, reals, times, codes
        self._ints, self._reals, self._times, self._codes = ints, reals, times, codes
        self.capacity = capacity

    @classmethod
    def of(cls, rows, Py_ssize_t width):
        """A buffer holding ``rows`` (already copied: ``sim.metrics.sink._Row``)."""
        group = cls(width, len(rows))
        for row in rows:
            group.add(row)
        return group

    def add(self, r):
        """Append request (or ``_Row``) ``r``'s fields."""
        cdef Py_ssize_t i = self.count
        if i == self.capacity:
            self._allocate(2 * self.capacity)
        self._ints[0, i] = r.id
        self._ints[1, i] = r.source
        self._ints[2, i] = r.klass
        self._ints[3, i] = r.priority
        self._ints[4, i] = r.outcome
        self._ints[5, i] = getattr(r, "reply_link", -1)
        self._reals[0, i] = r.arrival
        self._reals[1, i] = r.deadline
        self._reals[2, i] = r.size
        self._reals[3, i] = r.done
        reals = getattr(r, "reals", None)
        if reals is not None:  # a request: its per-stage fields in two typed arrays (sim.model.request)
            self._from_arrays(i, reals, r.ints)
            self.count = i + 1
            return
        self._stage_times(0, i, r.enqueued)
        self._stage_times(1, i, r.start)
        self._stage_times(2, i, r.end)
        self._optional_codes(0, i, r.instance, False)
        batch, batch_size, link = getattr(r, "batch", None), getattr(r, "batch_size", None), getattr(r, "link", None)
        optional = batch is None or batch_size is None or link is None  # a row without one records none
        self._optional_codes(1, i, batch, optional)
        self._optional_codes(2, i, batch_size, optional)
        self._optional_codes(3, i, link, optional)
        self.count = i + 1

    cdef int _from_arrays(self, Py_ssize_t i, array.array reals, array.array ints) except -1:
        """Row ``i``'s per-stage fields from a request's ``reals`` and ``ints`` (read in place)."""
        cdef Py_ssize_t j, at
        cdef Py_ssize_t fields = FIELDS
        cdef Py_ssize_t enqueued = ENQUEUED, start = START, end = END, instance = INSTANCE
        cdef Py_ssize_t batch = BATCH, batch_size = BATCH_SIZE, link = LINK
        if len(reals) < self.width * fields or len(ints) < self.width * fields:
            raise ValueError(f"a request of {self.width} stages has {len(reals)} reals and {len(ints)} ints")
        if reals.ob_descr.typecode != b"d" or ints.ob_descr.typecode != b"q":
            raise TypeError("a request's reals are doubles ('d') and its ints 64-bit integers ('q')")
        cdef double* r = reals.data.as_doubles
        cdef long long* n = ints.data.as_longlongs
        for j in range(self.width):
            at = j * fields
            self._times[0, i, j] = r[at + enqueued]
            self._times[1, i, j] = r[at + start]
            self._times[2, i, j] = r[at + end]
            self._codes[0, i, j] = n[at + instance]
            self._codes[1, i, j] = n[at + batch]
            self._codes[2, i, j] = n[at + batch_size]
            self._codes[3, i, j] = n[at + link]
        return 0

    cdef int _stage_times(self, Py_ssize_t k, Py_ssize_t i, values) except -1:
        """Per-stage time field ``k`` of row ``i``."""
        cdef Py_ssize_t j
        for j in range(self.width):
            self._times[k, i, j] = values[j]
        return 0

    cdef int _optional_codes(self, Py_ssize_t k, Py_ssize_t i, values, bint optional) except -1:
        """Per-stage integer field ``k`` of row ``i``; -1 in each stage (and counted) if the row lacks it."""
        cdef Py_ssize_t j
        if optional and values is None:
            self._unrecorded[k - 1] += 1
            for j in range(self.width):
                self._codes[k, i, j] = -1
        else:
            for j in range(self.width):
                self._codes[k, i, j] = values[j]
        return 0

    def recorded(self, name):
        """Whether some row has the per-stage field ``name``."""
        k = PER_STAGE.index(name) - 4  # batch, batch_size and link may be unrecorded
        return (self._unrecorded[k] if k >= 0 else 0) < self.count

    def matrix(self, attr, dtype=float):
        """The per-stage field ``attr``, (rows, width): a view of the buffer (a copy if ``dtype`` differs)."""
        k = PER_STAGE.index(attr)
        found = self.times[k, :self.count] if k < _TIMES else self.codes[k - _TIMES, :self.count]
        return found.astype(dtype, copy=False)

    def each(self, attr, dtype):
        """The field ``attr`` of every row: a view of the buffer (a copy if ``dtype`` differs)."""
        k = SCALARS.index(attr)
        found = self.ints[k, :self.count] if k < _INTS else self.reals[k - _INTS, :self.count]
        return found.astype(dtype, copy=False)
