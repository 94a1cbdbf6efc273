# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False
"""The engine's event heap, compiled: the same entries and order as ``heapq`` on a list, keys in C.

An entry is the tuple SimPy's heap holds, ``(time, priority, id, event)``, or the engine's timer
``(time, priority, id, function, args)``. ``heapq`` orders them by comparing tuples in Python: at a
city's width (thousands of pending timers) a pop makes ~25 such comparisons, each two rich
comparisons of floats, and each move of an entry touches its refcount (a cache miss at that width).
Here the heap is a C array of keys (time as a C double, priority, id) and slot numbers: sifting
compares and moves only those; the entries stay put in a list of slots (which the garbage collector
sees), written once when pushed and once when popped. Ids are unique, so the keys are a total order
and the pop sequence is the one ``heapq`` gives, entry for entry: runs stay byte-identical to the
pure-Python heap (``sim.model.heap.PythonHeap``), which is what runs where this module was not
compiled.

``run`` is the engine's dispatch loop, here so that a pop, the stop test and the call of a timer's
function cost no Python bytecode of their own.
"""

from libc.stdlib cimport malloc, realloc, free

cdef struct Key:
    double time
    long long priority
    long long id
    Py_ssize_t slot  # where the entry is in ``_slots``


cdef inline bint _before(Key* a, Key* b) noexcept nogil:
    if a.time != b.time:
        return a.time < b.time
    if a.priority != b.priority:
        return a.priority < b.priority
    return a.id < b.id


cdef class CompiledHeap:
    """A binary min-heap of event entries keyed by (time, priority, id), compared in C."""

    cdef Key* _keys  # the heap
    cdef Py_ssize_t* _free  # slots of ``_slots`` that hold None, to reuse
    cdef list _slots  # the entries (None in a free slot)
    cdef Py_ssize_t _size
    cdef Py_ssize_t _free_count
    cdef Py_ssize_t _capacity  # of ``_keys`` and ``_free``

    def __cinit__(self):
        self._capacity = 256
        self._keys = <Key*> malloc(self._capacity * sizeof(Key))
        self._free = <Py_ssize_t*> malloc(self._capacity * sizeof(Py_ssize_t))
        if self._keys is NULL or self._free is NULL:
            raise MemoryError()
        self._slots = []
        self._size = 0
        self._free_count = 0

    def __dealloc__(self):
        free(self._keys)
        free(self._free)

    def __len__(self):
        return self._size

    cdef int _grow(self) except -1:
        cdef Py_ssize_t capacity = self._capacity * 2
        cdef Key* keys = <Key*> realloc(self._keys, capacity * sizeof(Key))
        if keys is NULL:
            raise MemoryError()
        self._keys = keys
        cdef Py_ssize_t* free_slots = <Py_ssize_t*> realloc(self._free, capacity * sizeof(Py_ssize_t))
        if free_slots is NULL:
            raise MemoryError()
        self._free = free_slots
        self._capacity = capacity
        return 0

    cpdef push(self, tuple entry):
        """Add an entry ``(time, priority, id, ...)``."""
        cdef Key key
        key.time = entry[0]
        key.priority = entry[1]
        key.id = entry[2]
        if self._size == self._capacity:
            self._grow()
        if self._free_count:
            self._free_count -= 1
            key.slot = self._free[self._free_count]
            self._slots[key.slot] = entry
        else:
            key.slot = len(self._slots)
            self._slots.append(entry)
        cdef Key* keys = self._keys
        cdef Py_ssize_t pos = self._size
        cdef Py_ssize_t parent
        while pos > 0:  # move the hole up past every parent that comes after the new key
            parent = (pos - 1) >> 1
            if not _before(&key, &keys[parent]):
                break
            keys[pos] = keys[parent]
            pos = parent
        keys[pos] = key
        self._size += 1

    cpdef tuple pop(self):
        """Remove and return the first entry (IndexError when empty, as ``heapq.heappop``)."""
        if self._size == 0:
            raise IndexError("pop from an empty heap")
        cdef Key* keys = self._keys
        cdef Py_ssize_t slot = keys[0].slot
        cdef tuple first = <tuple> self._slots[slot]
        self._slots[slot] = None
        self._free[self._free_count] = slot
        self._free_count += 1
        cdef Py_ssize_t last = self._size - 1
        self._size = last
        if last == 0:
            return first
        cdef Key key = keys[last]
        cdef Py_ssize_t pos = 0
        cdef Py_ssize_t child
        while True:  # move the hole down to where the last key belongs
            child = 2 * pos + 1
            if child >= last:
                break
            if child + 1 < last and _before(&keys[child + 1], &keys[child]):
                child += 1
            if not _before(&keys[child], &key):
                break
            keys[pos] = keys[child]
            pos = child
        keys[pos] = key
        return first

    def first_time(self):
        """The first entry's time, or infinity when there is none (``simpy.Environment.peek``)."""
        return self._slots[self._keys[0].slot][0] if self._size else float("inf")

    def run(self, engine, double stop, long long stop_id, dispatch):
        """Pop and dispatch entries until the first one at or after the urgent stop ``(stop, URGENT=0,
        stop_id)``: a timer's ``function(*args)``, an event's ``dispatch(event)``; ``engine.now`` is
        set to each entry's time before it runs."""
        cdef Key* first
        cdef tuple head
        cdef object last
        while self._size:
            first = &self._keys[0]
            if first.time >= stop and (first.time > stop or first.priority > 0 or first.id > stop_id):
                break
            head = self.pop()
            engine.now = head[0]
            last = head[len(head) - 1]
            if type(last) is tuple:  # a timer: its args last (an event's entry ends with the event)
                head[3](*last)
            else:
                dispatch(head[3])
