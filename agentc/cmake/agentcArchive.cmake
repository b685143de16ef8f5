# Run by agentc_add_graph after `agentc compile` (cmake -P): pack the CPU objects that
# agentc wrote under <output dir>/<pool>/*.o into one static library with a fixed name,
# so that the build system can link it without knowing the pool and module names.
#
# Inputs: AGENTC_OUTPUT_DIR, AGENTC_ARCHIVE, AGENTC_AR, AGENTC_RANLIB (optional).
foreach(var AGENTC_OUTPUT_DIR AGENTC_ARCHIVE AGENTC_AR)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "agentcArchive.cmake: ${var} is not set")
  endif()
endforeach()

file(GLOB _objects LIST_DIRECTORIES false "${AGENTC_OUTPUT_DIR}/*.o" "${AGENTC_OUTPUT_DIR}/*/*.o")
list(SORT _objects)
file(REMOVE "${AGENTC_ARCHIVE}")
# `ar qc` with no members still writes a valid empty archive: a graph may place nothing
# on CPUs, and the link then simply pulls in no kernels.
execute_process(COMMAND "${AGENTC_AR}" qc "${AGENTC_ARCHIVE}" ${_objects}
                RESULT_VARIABLE _rc ERROR_VARIABLE _err)
if(NOT _rc EQUAL 0)
  message(FATAL_ERROR "agentc: archiving CPU objects into ${AGENTC_ARCHIVE} failed: ${_err}")
endif()
if(AGENTC_RANLIB)
  execute_process(COMMAND "${AGENTC_RANLIB}" "${AGENTC_ARCHIVE}" RESULT_VARIABLE _rc)
endif()
