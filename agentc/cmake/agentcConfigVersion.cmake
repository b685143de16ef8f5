# Version check for find_package(agentc <version>): the version is read from the
# installed Python package so there is one source of truth (agentc/__init__.py).
file(STRINGS "${CMAKE_CURRENT_LIST_DIR}/../__init__.py" _agentc_version_line REGEX "^__version__ *=")
string(REGEX REPLACE "^__version__ *= *\"([^\"]*)\".*" "\\1" PACKAGE_VERSION "${_agentc_version_line}")
unset(_agentc_version_line)

if(PACKAGE_FIND_VERSION VERSION_GREATER PACKAGE_VERSION)
  set(PACKAGE_VERSION_COMPATIBLE FALSE)
else()
  # 0.x releases may break compatibility between minor versions.
  string(REGEX MATCH "^[0-9]+\\.[0-9]+" _have "${PACKAGE_VERSION}")
  string(REGEX MATCH "^[0-9]+\\.[0-9]+" _want "${PACKAGE_FIND_VERSION}")
  if(PACKAGE_VERSION VERSION_LESS 1.0 AND NOT _have STREQUAL _want)
    set(PACKAGE_VERSION_COMPATIBLE FALSE)
  else()
    set(PACKAGE_VERSION_COMPATIBLE TRUE)
  endif()
  if(PACKAGE_FIND_VERSION STREQUAL PACKAGE_VERSION)
    set(PACKAGE_VERSION_EXACT TRUE)
  endif()
  unset(_have)
  unset(_want)
endif()
