# agentcConfig.cmake: use agentc from CMake (>= 3.20, for DEPFILE with Make and Ninja).
#
#   find_package(agentc REQUIRED)   # with -Dagentc_DIR=$(agentc --cmake-dir)
#   agentc_add_graph(voice SOURCE voice.agent CLUSTER cluster.toml TARGETS cpu)
#   target_link_libraries(app PRIVATE agentc::voice)
#
# agentc_add_graph(NAME SOURCE file.agent [CLUSTER c.toml] [TARGETS cpu nvvm rocdl]
#                  [OUTPUT_DIR dir] [CATALOGS a.toml ...] [OPTIONS extra agentc flags ...])
#
# adds a custom command running
#   agentc compile <SOURCE> -o <dir> -MD -MF <dir>.d --quiet --targets <TARGETS> ...
# whose depfile (the .agent file, its imports, the cluster and catalog files) makes the
# graph rebuild when any of them changes, then packs the CPU objects (<dir>/<pool>/*.o)
# into one static library. It defines:
#   target   NAME              builds the graph (add_dependencies on it as needed)
#   target   agentc::NAME      INTERFACE library: the CPU kernels and include dir
#   var      NAME_OUTPUT_DIR   the agentc output directory (default <binary dir>/agentc/NAME)
#   var      NAME_INCLUDE_DIR  same directory: #include "<pool>/<module>.h"
#   var      NAME_LIBRARY      the static library of CPU objects
#   var      NAME_MANIFEST     <dir>/manifest.json
#   var      NAME_DEPFILE      <dir>.d
# AGENTC_EXECUTABLE (cache) names the agentc program; by default the one on PATH.

if(CMAKE_VERSION VERSION_LESS 3.20)
  message(FATAL_ERROR "agentc needs CMake >= 3.20 (DEPFILE support); this is ${CMAKE_VERSION}")
endif()
include_guard(GLOBAL)

set(_AGENTC_CMAKE_DIR "${CMAKE_CURRENT_LIST_DIR}")
include("${CMAKE_CURRENT_LIST_DIR}/agentcConfigVersion.cmake")
set(agentc_VERSION "${PACKAGE_VERSION}")

find_program(AGENTC_EXECUTABLE agentc DOC "The agentc compiler")
if(NOT AGENTC_EXECUTABLE)
  set(agentc_FOUND FALSE)
  set(agentc_NOT_FOUND_MESSAGE "agentc is not on PATH; pip install agentc or set -DAGENTC_EXECUTABLE=...")
  return()
endif()

function(agentc_add_graph NAME)
  cmake_parse_arguments(PARSE_ARGV 1 ARG "" "SOURCE;CLUSTER;OUTPUT_DIR" "TARGETS;CATALOGS;OPTIONS")
  if(ARG_UNPARSED_ARGUMENTS)
    message(FATAL_ERROR "agentc_add_graph(${NAME}): unknown arguments: ${ARG_UNPARSED_ARGUMENTS}")
  endif()
  if(NOT ARG_SOURCE)
    message(FATAL_ERROR "agentc_add_graph(${NAME}): SOURCE is required, e.g. SOURCE voice.agent")
  endif()
  get_filename_component(source "${ARG_SOURCE}" ABSOLUTE BASE_DIR "${CMAKE_CURRENT_SOURCE_DIR}")
  if(ARG_OUTPUT_DIR)
    get_filename_component(outdir "${ARG_OUTPUT_DIR}" ABSOLUTE BASE_DIR "${CMAKE_CURRENT_BINARY_DIR}")
  else()
    set(outdir "${CMAKE_CURRENT_BINARY_DIR}/agentc/${NAME}")
  endif()
  if(NOT ARG_TARGETS)
    set(ARG_TARGETS cpu)
  endif()
  list(JOIN ARG_TARGETS "," targets)

  set(cmd "${AGENTC_EXECUTABLE}" compile "${source}" -o "${outdir}" -MD -MF "${outdir}.d" --quiet
      --targets "${targets}")
  set(deps "${source}")
  if(ARG_CLUSTER)
    get_filename_component(cluster "${ARG_CLUSTER}" ABSOLUTE BASE_DIR "${CMAKE_CURRENT_SOURCE_DIR}")
    list(APPEND cmd --cluster "${cluster}")
    list(APPEND deps "${cluster}")
  endif()
  foreach(cat IN LISTS ARG_CATALOGS)
    get_filename_component(cat "${cat}" ABSOLUTE BASE_DIR "${CMAKE_CURRENT_SOURCE_DIR}")
    list(APPEND cmd --catalog "${cat}")
    list(APPEND deps "${cat}")
  endforeach()
  list(APPEND cmd ${ARG_OPTIONS})

  set(archive "${CMAKE_CURRENT_BINARY_DIR}/${CMAKE_STATIC_LIBRARY_PREFIX}${NAME}_agentc${CMAKE_STATIC_LIBRARY_SUFFIX}")
  # The output directory itself is the primary output: agentc replaces it atomically
  # (so its mtime moves) and names it as the target in the depfile.
  add_custom_command(
    OUTPUT "${outdir}" "${archive}"
    COMMAND ${cmd}
    COMMAND "${CMAKE_COMMAND}" "-DAGENTC_OUTPUT_DIR=${outdir}" "-DAGENTC_ARCHIVE=${archive}"
            "-DAGENTC_AR=${CMAKE_AR}" "-DAGENTC_RANLIB=${CMAKE_RANLIB}"
            -P "${_AGENTC_CMAKE_DIR}/agentcArchive.cmake"
    DEPENDS ${deps}
    DEPFILE "${outdir}.d"
    COMMENT "agentc: compiling ${ARG_SOURCE}"
    VERBATIM)
  add_custom_target(${NAME} DEPENDS "${outdir}" "${archive}")

  add_library(${NAME}_agentc INTERFACE)
  target_include_directories(${NAME}_agentc INTERFACE "${outdir}")
  target_link_libraries(${NAME}_agentc INTERFACE "${archive}")
  add_dependencies(${NAME}_agentc ${NAME})
  add_library(agentc::${NAME} ALIAS ${NAME}_agentc)

  set(${NAME}_OUTPUT_DIR "${outdir}" PARENT_SCOPE)
  set(${NAME}_INCLUDE_DIR "${outdir}" PARENT_SCOPE)
  set(${NAME}_LIBRARY "${archive}" PARENT_SCOPE)
  set(${NAME}_MANIFEST "${outdir}/manifest.json" PARENT_SCOPE)
  set(${NAME}_DEPFILE "${outdir}.d" PARENT_SCOPE)
endfunction()
